"""``run_live.py serve``: the multi-camera analyzer and the web view in one command, sets and reps in a database.

Per camera a ``WebFeed`` (a pipeline listener on the camera's output thread) commits each finished rep to the
database first, then shows it: a rep on the page is a rep on disk. The web server (uvicorn) runs in a process of its
own at a lower CPU priority (``realtime.web.process``), fed through a queue and shared memory, and keeps serving the
live view and the history after file cameras end, until Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING

from realtime.errors import RealtimeError
from realtime.settings import RunSettings
from realtime.sources.urls import parse_source
from realtime.web.process import PRIORITIES

if TYPE_CHECKING:
    from realtime.web.hub import LivePublisher

log = logging.getLogger("realtime")


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    web = p.add_argument_group("web view and database")
    web.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default loopback only; any other address needs a token)")
    web.add_argument("--port", type=int, default=8080, help="port (0: a free one)")
    web.add_argument("--token", default=None,
                     help="access token every page, stream and API call must carry; generated and printed once when "
                     "--host is not loopback and none is given")
    web.add_argument("--db", default="gym.sqlite",
                     help="where sets and reps are kept: a SQLite file, or postgresql://user:pw@host:port/db")
    web.add_argument("--set-rest", type=float, default=60.0, metavar="SECONDS",
                     help="a set closes after this long without a rep (or when the exercise changes)")
    web.add_argument("--stream-fps", type=float, default=10.0, help="most frames per second sent to each viewer")
    web.add_argument("--stream-width", type=int, default=960,
                     help="longest side of the frames sent to a viewer of one camera, pixels")
    web.add_argument("--tile-width", type=int, default=640,
                     help="longest side of the frames sent to the camera wall's tiles, pixels")
    web.add_argument("--web-priority", choices=PRIORITIES, default="idle",
                     help="CPU priority of the web server's own process: idle (default) uses only CPU time the "
                     "cameras leave, so on a busy machine viewers get fewer frames rather than the cameras; low is "
                     "nice 10")
    web.add_argument("--exit-when-done", action="store_true",
                     help="stop serving once every camera has ended (file cameras; for scripts and tests)")


class WebFeed:
    """One camera's results into the database (reps, sets) and the live hub (state, overlay frames, events)."""

    def __init__(self, camera: str, hub: LivePublisher, recorder=None) -> None:
        self.camera = camera
        self.hub = hub
        self.recorder = recorder
        self._last_tick = 0.0
        self.failed: str | None = None

    def _rep(self, rep: dict) -> None:
        if self.recorder is not None:
            try:
                self.recorder.on_rep(rep, time.time())  # committed before anyone sees it
            except Exception as exc:  # noqa: BLE001 - the analysis goes on; say it once
                if self.failed is None:
                    self.failed = f"database: {exc}"
                    log.error("camera %s: cannot record a rep in the database: %s", self.camera, exc)
        self.hub.publish_rep(self.camera, {**rep, "camera": self.camera})

    def wants_image(self) -> bool:
        return self.hub.wants_frame(self.camera)

    def frame(self, result, image, snapshot) -> None:
        if result.new_rep is not None:
            self._rep(result.new_rep.to_json())
        now = time.time()
        if now - self._last_tick >= 1.0:
            self._last_tick = now
            if self.recorder is not None:
                try:
                    self.recorder.tick(now)
                except Exception:  # noqa: BLE001 - reported by on_rep's path
                    pass
        last = result.last_rep
        self.hub.publish_state(self.camera, {
            "camera": self.camera,
            "state": _state_name(snapshot.status),
            "label": snapshot.label,
            "confidence": round(float(snapshot.confidence), 3),
            "exercise": result.exercise,
            "reps": result.rep_count,
            "last_rep": last.to_json() if last is not None else None,
            "cues": list(result.cues),
            "fps": round(snapshot.fps_out, 2),
            "frames_processed": snapshot.frames_processed,
            "frames_dropped": snapshot.frames_dropped,
            "frames_skipped": snapshot.frames_skipped,
            "error": self.failed,
        })
        if image is not None:
            self.hub.publish_frame(self.camera, image)

    def event(self, record: dict) -> None:
        if record.get("type") == "rep":  # a rep credited at the end of a file
            self._rep(record)
        else:
            self.hub.publish_event(self.camera, {**record, "camera": self.camera})
            if record.get("type") == "source":
                self.hub.publish_state(self.camera, {**self.hub.state(self.camera), "state": record["state"]})


class ServeListeners:
    """``listeners_for`` of ``serve``: per camera a ``WebFeed`` into the web process and a ``SetRecorder`` on the
    store. Picklable, so that with ``--workers`` each camera worker opens its own database connection and publishes
    its own cameras (``open`` / ``close`` there; in a single process ``run_serve`` calls them)."""

    def __init__(self, publisher: LivePublisher, db_url: str, set_rest: float, host: str) -> None:
        self.publisher = publisher
        self.db_url = db_url
        self.set_rest = set_rest
        self.host = host
        self._store = None
        self.recorders: dict = {}

    def __getstate__(self) -> dict:
        return {"publisher": self.publisher, "db_url": self.db_url, "set_rest": self.set_rest, "host": self.host}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def open(self):
        """The database connection of this process (opened at the first call)."""
        from realtime.store import open_store

        if self._store is None:
            self._store = open_store(self.db_url)
        return self._store

    def __call__(self, camera: str) -> tuple:
        from realtime.store import SetRecorder

        self.open()
        recorder = self.recorders.get(camera)
        if recorder is None:
            recorder = self.recorders[camera] = SetRecorder(self._store, camera, host=self.host, rest_s=self.set_rest)
        return (WebFeed(camera, self.publisher, recorder),)

    def close(self, reason: str) -> None:
        """Finish every open set (``done``, or ``interrupted``) and close the database connection."""
        for recorder in self.recorders.values():
            try:
                recorder.close(reason)
            except Exception:  # noqa: BLE001 - closing must not mask the real error
                log.exception("closing a set failed")
        if self._store is not None:
            self._store.close()
            self._store = None


def _publish_engine(engine, publisher: LivePublisher, stop: threading.Event) -> None:
    """The shared engine's batch figures for the page, once a second, from the analyzer's process."""
    while not stop.wait(1.0):
        stats = engine.batch_stats()
        if stats is not None:
            publisher.publish_engine({"batches": stats.batches, "batch_size": round(stats.mean_batch, 3),
                                      "max_batch": stats.max_batch, "latency_ms": round(stats.network_p50_ms, 3),
                                      "latency_p95_ms": round(stats.network_p95_ms, 3)})


def _state_name(status: str) -> str:
    return {"ok": "live", "starting": "starting"}.get(status, status)


def run_serve(settings: RunSettings, args: argparse.Namespace) -> int:
    """Analyzer + web server + database until Ctrl-C/SIGTERM (or, with --exit-when-done, the cameras' end)."""
    import dataclasses

    from realtime.app import install_stop_signals, run, validate
    from realtime.web.app import _is_loopback
    from realtime.web.auth import new_token
    from realtime.web.process import WebConfig, WebProcess

    validate(settings)
    for cam in settings.cameras:
        parse_source(cam.source)  # a bad scheme is refused before the server starts
    token = args.token
    if token is not None and len(token) < 16:
        raise RealtimeError("--token must be at least 16 characters")
    generated = False
    if token is None and not _is_loopback(args.host):
        token, generated = new_token(), True
    if args.set_rest <= 0:
        raise RealtimeError("--set-rest must be more than 0 seconds")
    names = [c.name for c in settings.cameras]
    # Camera URLs (and any credentials in them) must never reach a browser: the hub scrubs them from what it sends.
    web = WebProcess(WebConfig(
        tuple(names), host=args.host, port=args.port, token=token, db_url=args.db, max_fps=args.stream_fps,
        max_width=args.stream_width, tile_width=args.tile_width, redact=tuple(c.source for c in settings.cameras),
        priority=args.web_priority, verbose=getattr(args, "verbose", 0)))
    listeners = ServeListeners(web.publisher(), args.db, args.set_rest, socket.gethostname())
    # The database is opened (and a bad --db refused) before anything starts; this process's cameras use the same
    # connection, and camera workers open their own.
    interrupted = listeners.open().close_interrupted_sets(host=socket.gethostname())
    if interrupted:
        log.warning("%d set(s) left open by an earlier run were closed as interrupted", interrupted)
    stop = threading.Event()
    install_stop_signals(stop)
    ended = threading.Event()  # stops the engine-figures thread when the cameras end
    try:
        url = web.start()
        print(f"serving {url}" + (f"  (token: {token})" if generated else ""), flush=True)
        if generated:
            print("the token is printed only this once; open "
                  f"{url}?token={token} or send 'Authorization: Bearer <token>'", file=sys.stderr, flush=True)

        def on_engine(engine) -> None:
            threading.Thread(target=_publish_engine, args=(engine, web, ended), name="engine-figures",
                             daemon=True).start()

        settings = dataclasses.replace(settings, headless=True, dashboard=False)
        code = run(settings, stop=stop, listeners_for=listeners, on_engine=on_engine, install_signals=False)
        ended.set()
        listeners.close("done")  # the cameras ended: their open sets are finished (workers closed theirs)
        for name in names:
            web.publish_status(name, "ended")
        if not args.exit_when_done:
            log.warning("every camera has ended; still serving %s (Ctrl-C to stop)", url)
            while not stop.wait(0.5):
                if not web.alive:
                    log.error("the web server process ended (exit code %s)", web.exitcode)
                    return 1
        return code
    finally:
        ended.set()
        listeners.close("done" if stop.is_set() or args.exit_when_done else "interrupted")
        web.stop()
