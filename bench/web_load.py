#!/usr/bin/env python3
"""Web view under load: the real ``run_live.py serve`` with 4 live cameras, no viewers / viewers / no viewers.

Real clips (looped into a temporary file with ffmpeg ``-stream_loop``, stream copy; nothing is written into the
repository) are served as 4 ``--realtime`` cameras. After a warm-up, three windows in one run:

  A1  no viewers for ``--baseline`` seconds;
  B1  ``--viewers`` HTTP clients on 127.0.0.1 (httpx, asyncio), each watching what the camera wall shows (every
      camera's tile-size MJPEG stream and the SSE channel), for ``--seconds``; plus one client that asks for a
      full-size stream and then stops reading (stalled socket);
  A2  no viewers again;
  B2, A3, ...  with ``--rounds N``, N viewing windows in all (the stalled client only in B1): memory that grows
      again in B2 is a leak, a step in B1 that stays is the viewers' buffers.

The analyzer's fps per camera comes from the ``/metrics`` counters (``realtime_camera_frames_processed``) sampled
every second; the server's RSS and CPU time from psutil. Reported: fps per camera and window, the ratio
mean(B) / mean(A) (goal > 0.9), RSS over time (flat?), what the viewers received, and when the stalled client was
dropped and what the cameras did meanwhile. The clients run on the same machine as the server, standing in for
browsers on other machines: by default at idle CPU priority (``--client-priority normal`` to let them compete with
the analyzer); their CPU time is reported beside the server's.

    python bench/web_load.py [--seconds 120] [--baseline 60] [--viewers 20] [--rounds 1]
                             [--serve-arg=--analysis-fps=10 ...] [--json out/web_load.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("REALTIME_SHARED", ROOT.parent / "shared")) / "data"
CLIPS = {  # camera name -> clip under ../shared/data (720p, 30 fps)
    "squat": "workouttracker_reps/videos/squats/squat_24.mp4",
    "pullup": "workouttracker_reps/videos/pull-ups/pull-up_9.mp4",
    "deadlift": "deadlift_bichraix/videos/good/good008.mp4",
    "dips": "workouttracker_reps/videos/dips/dips_8.mp4",
}
log = logging.getLogger("web_load")


# ---------------------------------------------------------------------------------------------------- the server
def clip_seconds(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def loop_clip(src: Path, dst: Path, seconds: float) -> Path:
    """``src`` repeated (stream copy, timestamps continue) until it lasts at least ``seconds``."""
    loops = math.ceil(seconds / clip_seconds(src))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops), "-i", str(src), "-an", "-c", "copy",
                    str(dst)], check=True)
    return dst


def start_serve(sources: dict[str, Path], db: Path, stderr_path: Path, extra: tuple[str, ...] = ()) -> tuple[
        subprocess.Popen, str]:
    args = [a for name, path in sources.items() for a in ("--source", f"{name}={path}")] + list(extra)
    stderr = open(stderr_path, "w")  # noqa: SIM115 - the child holds it; closed when the process is gone
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "serve", *args, "--realtime", "--port", "0",
                             "--db", str(db)], cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    stderr.close()
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        if line.startswith("serving "):
            return proc, line.split()[1].rstrip("/")
    proc.kill()
    raise SystemExit(f"serve did not start: {stderr_path.read_text()[-2000:]}")


def stop_serve(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


# ---------------------------------------------------------------------------------------------------- sampling
@dataclass
class Sample:
    t: float  # monotonic
    frames: dict[str, float]  # camera -> frames processed (counter)
    encoded: dict[str, float]  # camera -> JPEG frames encoded for viewers (counter)
    video_clients: float
    event_clients: float
    dropped_clients: float
    rss_mb: float  # the analyzer's process
    web_rss_mb: float  # its web process (0 when serving runs in the analyzer's process)
    server_cpu_s: float  # both
    web_cpu_s: float  # the web process alone
    bench_cpu_s: float  # this process: the clients (and the sampler)


class Sampler(threading.Thread):
    """Scrapes /metrics and the server's RSS/CPU every ``period`` seconds until stopped."""

    def __init__(self, url: str, pid: int, period: float = 1.0) -> None:
        super().__init__(name="sampler", daemon=True)
        self.url, self.period = url, period
        self.server = psutil.Process(pid)
        self.me = psutil.Process()
        self.samples: list[Sample] = []
        self.errors = 0
        self._halt = threading.Event()

    def scrape(self, client: httpx.Client) -> Sample:
        text = client.get(self.url + "/metrics").text
        frames: dict[str, float] = {}
        encoded: dict[str, float] = {}
        clients = {"video": 0.0, "events": 0.0}
        dropped = 0.0
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "realtime_camera_frames_processed_total":
                    frames[s.labels["camera"]] = s.value
                elif s.name == "realtime_web_frames_encoded_total":
                    encoded[s.labels["camera"]] = s.value
                elif s.name == "realtime_web_clients":
                    clients[s.labels["kind"]] = s.value
                elif s.name == "realtime_web_clients_dropped_total":
                    dropped = s.value
        cpu = self.server.cpu_times()
        mine = self.me.cpu_times()
        web_rss = web_cpu = 0.0
        for child in self.server.children(recursive=True):
            try:
                child_cpu = child.cpu_times()
                web_cpu += child_cpu.user + child_cpu.system
                if "spawn_main" in " ".join(child.cmdline()):
                    web_rss += child.memory_info().rss / 2**20
            except psutil.Error:
                pass
        return Sample(time.monotonic(), frames, encoded, clients["video"], clients["events"], dropped,
                      self.server.memory_info().rss / 2**20, web_rss,
                      cpu.user + cpu.system + web_cpu, web_cpu, mine.user + mine.system)

    def run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            while not self._halt.is_set():
                t0 = time.monotonic()
                try:
                    self.samples.append(self.scrape(client))
                except (httpx.HTTPError, psutil.Error, ValueError):
                    self.errors += 1
                self._halt.wait(max(0.0, self.period - (time.monotonic() - t0)))

    def stop(self) -> None:
        self._halt.set()
        self.join(15)

    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def window(self, t0: float, t1: float) -> list[Sample]:
        return [s for s in self.samples if t0 <= s.t <= t1]


def rates(samples: list[Sample]) -> dict:
    """Per-camera fps, JPEG encodes/s, cores busy (server, clients), RSS of a window's first and last samples."""
    if len(samples) < 2:
        return {}
    a, b = samples[0], samples[-1]
    dt = b.t - a.t
    fps = {c: (b.frames[c] - a.frames.get(c, 0.0)) / dt for c in b.frames}
    return {
        "seconds": round(dt, 1),
        "fps": {c: round(v, 2) for c, v in fps.items()},
        "fps_mean": round(statistics.fmean(fps.values()), 2),
        "encoded_per_s": round(sum(b.encoded[c] - a.encoded.get(c, 0.0) for c in b.encoded) / dt, 1),
        "server_cores": round((b.server_cpu_s - a.server_cpu_s) / dt, 2),
        "web_cores": round((b.web_cpu_s - a.web_cpu_s) / dt, 2),
        "client_cores": round((b.bench_cpu_s - a.bench_cpu_s) / dt, 2),
        "rss_mb": [round(a.rss_mb, 1), round(b.rss_mb, 1)],
        "rss_max_mb": round(max(s.rss_mb for s in samples), 1),
        "web_rss_mb": [round(a.web_rss_mb, 1), round(b.web_rss_mb, 1)],
    }


# ---------------------------------------------------------------------------------------------------- the clients
@dataclass
class StreamStats:
    kind: str
    camera: str | None
    bytes: int = 0
    units: int = 0  # JPEG parts (video) or SSE messages (events)
    seconds: float = 0.0
    error: str | None = None


async def watch(client: httpx.AsyncClient, url: str, stats: StreamStats, deadline: float) -> None:
    """Read one pushed stream until ``deadline`` (bounded: a silent stream is cut at the deadline too)."""
    marker = b"Content-Type: image/jpeg" if stats.kind == "video" else b"\nevent: "
    tail = b""
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    stats.error = f"HTTP {response.status_code}"
                    return
                async for chunk in response.aiter_raw():
                    stats.bytes += len(chunk)
                    data = tail + chunk
                    stats.units += data.count(marker)
                    tail = data[-(len(marker) - 1):]
    except TimeoutError:
        pass  # the window ended
    except httpx.HTTPError as exc:
        stats.error = f"{type(exc).__name__}: {exc}"
    finally:
        stats.seconds = time.monotonic() - t0


async def viewer(url: str, cameras: list[str], deadline: float) -> list[StreamStats]:
    """One browser on the camera wall: every camera's tile-size MJPEG stream (as wall.js asks) plus the SSE channel."""
    streams = [StreamStats("video", c) for c in cameras] + [StreamStats("events", None)]
    limits = httpx.Limits(max_connections=len(streams) + 2, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(30.0, connect=10.0)) as client:
        await asyncio.gather(*(
            watch(client, f"{url}/api/cameras/{s.camera}/stream.mjpeg?size=tile" if s.kind == "video"
                  else f"{url}/api/events", s, deadline) for s in streams))
    return streams


async def viewers(url: str, cameras: list[str], n: int, seconds: float) -> list[StreamStats]:
    deadline = time.monotonic() + seconds
    results = await asyncio.gather(*(viewer(url, cameras, deadline) for _ in range(n)))
    return [s for streams in results for s in streams]


class StalledClient:
    """Asks for a camera's MJPEG stream with a tiny receive buffer, reads the response head, then never reads."""

    def __init__(self, url: str, camera: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, int(port)))
        self.sock.sendall(f"GET /api/cameras/{camera}/stream.mjpeg HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        self.head = self.sock.recv(1024).split(b"\r\n", 1)[0].decode("latin-1")
        self.t0 = time.monotonic()

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------------------------------------------- the run
@dataclass
class Report:
    command: str
    cameras: dict[str, str]
    viewers: int
    client_priority: str = "normal"
    windows: dict = field(default_factory=dict)
    ratio: dict = field(default_factory=dict)
    viewer_streams: dict = field(default_factory=dict)
    stalled: dict = field(default_factory=dict)
    rss: dict = field(default_factory=dict)
    serve_exit: int | None = None
    sampler_errors: int = 0
    samples: list = field(default_factory=list)


def wait_until(what: str, check, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited ({proc.returncode}) while waiting for {what}")
        if check():
            return
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def run(args: argparse.Namespace, work: Path) -> Report:
    from realtime.web.process import lower_priority

    cameras = {name: DATA / rel for name, rel in CLIPS.items()}
    for path in cameras.values():
        if not path.exists():
            raise SystemExit(f"error: {path} not found (real clips live in ../shared/data)")
    total = args.warmup + (args.rounds + 1) * args.baseline + args.rounds * (args.seconds + 30) + 90  # + start-up and slack
    looped = {name: loop_clip(path, work / f"{name}.mp4", total) for name, path in cameras.items()}
    log.info("looped clips ready (%.0f s each)", total)
    proc, url = start_serve(looped, work / "gym.sqlite", work / "serve.log", tuple(args.serve_arg))
    lower_priority(args.client_priority)  # this process only (its threads start below); serve started as usual
    report = Report(" ".join([Path(sys.executable).name, *sys.argv]), {n: CLIPS[n] for n in cameras}, args.viewers,
                    args.client_priority)
    sampler = Sampler(url, proc.pid)
    stalled: StalledClient | None = None
    try:
        sampler.start()
        wait_until("every camera to process frames",
                   lambda: (s := sampler.latest()) is not None and len(s.frames) == len(cameras)
                   and all(v > 0 for v in s.frames.values()), 120, proc)
        log.info("serving %s; warm-up %.0f s", url, args.warmup)
        time.sleep(args.warmup)
        marks: dict[str, tuple[float, float]] = {}

        def idle_window(name: str) -> None:
            log.info("%s: no viewers, %.0f s", name, args.baseline)
            t0 = time.monotonic()
            time.sleep(args.baseline)
            marks[name] = (t0, time.monotonic())

        stalled_box: dict = {}

        def stall_later() -> None:  # once the viewers are connected
            time.sleep(min(3.0, args.seconds / 4))
            stalled_box["client"] = StalledClient(url, next(iter(cameras)))

        idle_window("A1")
        streams: list[StreamStats] = []
        for k in range(1, args.rounds + 1):
            log.info("B%d: %d viewers x (%d MJPEG + SSE)%s, %.0f s", k, args.viewers, len(cameras),
                     " and one stalled client" if k == 1 else "", args.seconds)
            t0 = time.monotonic()
            staller = threading.Thread(target=stall_later, daemon=True) if k == 1 else None
            if staller is not None:
                staller.start()
            streams += asyncio.run(viewers(url, list(cameras), args.viewers, args.seconds))
            marks[f"B{k}"] = (t0, time.monotonic())
            if staller is not None:
                staller.join(10)
                stalled = stalled_box.get("client")
                if stalled is not None:  # its part is done once it was dropped (or the window is over)
                    stalled.close()
            wait_until("the viewers to be gone", lambda: (s := sampler.latest()) is not None and s.video_clients <= 0
                       and s.event_clients <= 0, 30, proc)
            idle_window(f"A{k + 1}")
    finally:
        try:
            if stalled is not None:
                stalled.close()
            sampler.stop()
        finally:
            report.serve_exit = stop_serve(proc)
    if report.serve_exit != 0:
        log.warning("serve exited %s: %s", report.serve_exit, (work / "serve.log").read_text()[-1000:])

    # ------------------------------------------------------------------ figures
    for name, (a, b) in marks.items():
        report.windows[name] = rates(sampler.window(a, b))
    idle = [w for n, w in report.windows.items() if n.startswith("A")]
    watched = [w for n, w in report.windows.items() if n.startswith("B")]
    base = {c: statistics.fmean(w["fps"][c] for w in idle) for c in cameras}
    loaded = {c: statistics.fmean(w["fps"][c] for w in watched) for c in cameras}
    report.ratio = {"per_camera": {c: round(loaded[c] / base[c], 3) for c in cameras},
                    "mean": round(statistics.fmean(loaded.values()) / statistics.fmean(base.values()), 3),
                    "per_round": [round(report.windows[f"B{k}"]["fps_mean"] / statistics.fmean(
                        [report.windows[f"A{k}"]["fps_mean"], report.windows[f"A{k + 1}"]["fps_mean"]]), 3)
                        for k in range(1, args.rounds + 1)]}
    video = [s for s in streams if s.kind == "video"]
    events = [s for s in streams if s.kind == "events"]
    report.viewer_streams = {
        "video_streams": len(video), "event_streams": len(events),
        "errors": sorted({s.error for s in streams if s.error}),
        "video_fps_per_stream": {"mean": round(statistics.fmean(s.units / s.seconds for s in video), 2),
                                 "min": round(min(s.units / s.seconds for s in video), 2)},
        "sse_messages_per_s_per_client": round(statistics.fmean(s.units / s.seconds for s in events), 2),
        "received_mb_per_s": round(sum(s.bytes for s in streams) / 2**20 / sum(w["seconds"] for w in watched), 2),
    }
    all_samples = sampler.samples
    if stalled is not None:
        drop = next((s for s in all_samples if s.t >= stalled.t0 and s.dropped_clients >= 1), None)
        entry = {"response": stalled.head, "camera": next(iter(cameras))}
        if drop is not None:
            entry["dropped_after_s"] = round(drop.t - stalled.t0, 1)
            entry["fps_while_stalled"] = rates(sampler.window(stalled.t0, drop.t)).get("fps")
        entry["clients_dropped_total"] = max(s.dropped_clients for s in all_samples)
        report.stalled = entry
    first, last = marks["A1"][0], marks[f"A{args.rounds + 1}"][1]
    run_samples = sampler.window(first, last)
    report.rss = {"start_mb": round(run_samples[0].rss_mb, 1), "end_mb": round(run_samples[-1].rss_mb, 1),
                  "max_mb": round(max(s.rss_mb for s in run_samples), 1),
                  "per_30s_mb": [round(s.rss_mb, 1) for s in run_samples[::30]],
                  "web_per_30s_mb": [round(s.web_rss_mb, 1) for s in run_samples[::30]],
                  "end_of_each_window_mb": {n: w["rss_mb"][1] for n, w in report.windows.items()}}
    report.sampler_errors = sampler.errors
    report.samples = [asdict(s) | {"t": round(s.t - first, 2)} for s in all_samples]
    return report


def print_report(r: Report) -> None:
    print(f"cameras: {', '.join(f'{n} ({p})' for n, p in r.cameras.items())}; viewers: {r.viewers} "
          f"(client priority: {r.client_priority})")
    print("| window | s | fps per camera | mean fps | JPEG/s | server cores (web process) | client cores | "
          "analyzer RSS MB (start, end) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, w in r.windows.items():
        fps = ", ".join(f"{v:.1f}" for v in w["fps"].values())
        print(f"| {name} | {w['seconds']} | {fps} | {w['fps_mean']} | {w['encoded_per_s']} | {w['server_cores']} ({w['web_cores']}) | "
              f"{w['client_cores']} | {w['rss_mb'][0]} → {w['rss_mb'][1]} |")
    print(f"fps ratio mean(B) / mean(A): {r.ratio['mean']} (per camera {r.ratio['per_camera']}, per round "
          f"{r.ratio['per_round']}); goal > 0.9: "
          f"{'met' if r.ratio['mean'] > 0.9 else 'NOT met'}")
    v = r.viewer_streams
    print(f"viewers: {v['video_streams']} MJPEG + {v['event_streams']} SSE streams, "
          f"{v['video_fps_per_stream']['mean']} frames/s per stream (min {v['video_fps_per_stream']['min']}), "
          f"{v['sse_messages_per_s_per_client']} SSE messages/s per client, {v['received_mb_per_s']} MB/s in all, "
          f"errors: {v['errors'] or 'none'}")
    print(f"stalled client: {r.stalled}")
    print(f"analyzer RSS: {r.rss['start_mb']} → {r.rss['end_mb']} MB (max {r.rss['max_mb']}); every 30 s: "
          f"{r.rss['per_30s_mb']}; web process RSS every 30 s: {r.rss['web_per_30s_mb']}; at the end of each "
          f"window: {r.rss['end_of_each_window_mb']}")
    print(f"serve exit code: {r.serve_exit}; sampler errors: {r.sampler_errors}")


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from realtime.logs import add_verbose_argument, setup_logging
    from realtime.web.process import PRIORITIES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=120.0, help="window with viewers (default 120)")
    p.add_argument("--baseline", type=float, default=60.0, help="each window without viewers (default 60)")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds after every camera runs, before A1")
    p.add_argument("--viewers", type=int, default=20, help="HTTP clients, each on every camera + SSE (default 20)")
    p.add_argument("--rounds", type=int, default=1, help="viewing windows, each followed by one without viewers")
    p.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for serve, e.g. --serve-arg=--stream-fps=5 (repeat for several)")
    p.add_argument("--client-priority", choices=PRIORITIES, default="idle",
                   help="CPU priority of the clients (and the sampler): they stand in for browsers on other machines, "
                   "so by default they run at idle priority (SCHED_IDLE) and take only CPU time nothing else wants; "
                   "normal: compete with the analyzer as equals (the worst case of clients on the same machine)")
    p.add_argument("--json", type=Path, default=None, help="write the whole record (with every sample) here")
    add_verbose_argument(p)
    args = p.parse_args()
    setup_logging(max(1, args.verbose))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per /metrics scrape otherwise
    if args.seconds < 10 or args.baseline < 5 or args.viewers < 1 or args.rounds < 1:
        raise SystemExit("error: --seconds >= 10, --baseline >= 5, --viewers >= 1 and --rounds >= 1")
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            raise SystemExit(f"error: {tool} not found (apt-get install -y ffmpeg)")
    with tempfile.TemporaryDirectory(prefix="web_load_") as tmp:
        report = run(args, Path(tmp))
    print_report(report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(report), indent=1))


if __name__ == "__main__":
    main()
