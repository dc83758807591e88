"""Terminal dashboard (rich): per-stage latency (and the rate of the slowest stage), buffer fill, drops, end-to-end latency, label."""

from __future__ import annotations

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from realtime.stats import StageStats, StatsSnapshot, bottleneck, stage_rate_cell


def stage_table(stages: dict[str, StageStats], end_to_end: StageStats | None, title: str | None = None) -> Table:
    table = Table(title=title, expand=False)
    table.add_column("stage")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    table.add_column("max fps", justify="right")  # the bottleneck stage's rate only
    slowest = bottleneck({name: s.mean_ms for name, s in stages.items()})
    for name, s in stages.items():
        table.add_row(name, f"{s.p50_ms:.1f}", f"{s.p95_ms:.1f}", stage_rate_cell(name, s.mean_ms, slowest))
    if end_to_end is not None:
        table.add_row("end-to-end latency", f"{end_to_end.p50_ms:.1f}", f"{end_to_end.p95_ms:.1f}", "", style="bold")
    return table


def render(snapshot: StatsSnapshot, header: str) -> Panel:
    info = Text()
    status_style = "green" if snapshot.status == "ok" else "bold yellow"
    info.append(f"status {snapshot.status}", style=status_style)
    info.append(f"   out {snapshot.fps_out:.1f} fps")
    info.append(f"   read {snapshot.frames_read}  processed {snapshot.frames_processed}")
    info.append(f"  dropped {snapshot.frames_dropped}", style="red" if snapshot.frames_dropped else "")
    if snapshot.frames_skipped:
        info.append(f"  skipped {snapshot.frames_skipped} (analysis rate)")
    info.append(f"   buffer {snapshot.buffer_fill}/{snapshot.buffer_capacity}\n")
    label = snapshot.label or "-"
    info.append(f"label {label} ({snapshot.confidence * 100:.0f}%)   reps {snapshot.reps}", style="bold cyan")
    return Panel(Group(info, stage_table(snapshot.stages, snapshot.end_to_end)), title=header)


class Dashboard:
    """A ``rich.live.Live`` panel refreshed by the main loop (no extra thread)."""

    def __init__(self, header: str, console: Console | None = None, refresh_hz: float = 4.0) -> None:
        self.header = header
        self._live = Live(console=console or Console(stderr=True), auto_refresh=False, transient=False)
        self._period = 1.0 / refresh_hz
        self._last = 0.0

    def __enter__(self) -> Dashboard:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def update(self, snapshot: StatsSnapshot, now: float, force: bool = False) -> None:
        if force or now - self._last >= self._period:
            self._last = now
            self._live.update(render(snapshot, self.header), refresh=True)

    def update_many(self, snapshots: list[StatsSnapshot], engine, now: float, force: bool = False,
                    engine_note: str | None = None) -> None:
        """Several cameras: a row each and the shared engine's figures (``BatchStats`` or None; ``engine_note``
        says what runs the pose when there are none)."""
        if force or now - self._last >= self._period:
            self._last = now
            self._live.update(render_cameras(snapshots, engine, self.header, engine_note), refresh=True)


def render_cameras(snapshots: list[StatsSnapshot], engine, header: str, engine_note: str | None = None) -> Panel:
    """Several cameras: one row each (state, fps, drops, label, reps, last rep) and the shared engine's batches."""
    table = Table(expand=False)
    for col in ("camera", "state", "fps", "dropped", "e2e p95 ms", "label", "reps", "last rep"):
        table.add_column(col, justify="left" if col in ("camera", "state", "label", "last rep") else "right")
    for snap in snapshots:
        extra = snap.extra
        last = extra.get("last_rep")
        last_text = f"{last.exercise} #{last.index} {last.duration_s:.1f} s" if last is not None else "-"
        e2e = snap.end_to_end
        style = "green" if snap.status == "ok" else "bold yellow"
        table.add_row(str(extra.get("camera", "?")), Text(snap.status, style=style), f"{snap.fps_out:.1f}",
                      str(snap.frames_dropped), f"{e2e.p95_ms:.0f}" if e2e else "-",
                      f"{snap.label or '-'} ({snap.confidence * 100:.0f}%)", str(snap.reps), last_text)
    info = Text()
    if engine is not None and engine.batches:
        info.append(f"pose engine: {engine.batches} batches, mean batch {engine.mean_batch:.2f} (max "
                    f"{engine.max_batch}), network p50 {engine.network_p50_ms:.1f} ms / p95 "
                    f"{engine.network_p95_ms:.1f} ms, queue wait p95 {engine.queue_wait_p95_ms:.1f} ms")
    else:
        info.append(engine_note or "pose engine: shared, one camera at a time (no batching)")
    return Panel(Group(table, info), title=header)

