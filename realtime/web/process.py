"""The web server in a process of its own, fed by the analyzer: viewers never take the analysis's CPU or GIL.

Serving many viewers is Python work (HTTP framing, JPEG encoding, pushing events) that, in the analyzer's process,
competes for the GIL and the cores with the cameras. As Frigate does, the web side runs in its own process here, at
a lower CPU priority (``nice``): on a busy machine the viewers' frame rate gives way, not the analysis.

- ``WebProcess`` (the analyzer's side) has the ``LiveHub`` publishing methods. States, reps, events and engine
  figures go over a bounded ``multiprocessing`` queue (never blocking: on a full queue a message is dropped and
  counted); overlay frames go through ``FrameSlots`` (shared memory), written only for cameras somebody watches, at
  most ``max_fps`` per camera.
- ``_web_main`` (the web process) runs ``LiveHub`` + the FastAPI app + uvicorn exactly as a single process would, reads
  the store for the history, and exits on its own when the analyzer's process is gone (even after SIGKILL).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from realtime.errors import RealtimeError
from realtime.web.frames import FramePacer, FrameSlots

log = logging.getLogger("realtime")

QUEUE_SIZE = 4096  # messages; at ~60 states/s per 4 cameras this is a minute of a stuck web process
_STOP = ("stop",)


@dataclass(frozen=True)
class WebConfig:
    """Everything the web process needs (picklable)."""

    cameras: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    db_url: str | None = None
    max_fps: float = 10.0
    max_width: int = 960
    tile_width: int = 640
    redact: tuple[str, ...] = ()
    priority: str = "idle"  # "idle" (SCHED_IDLE), "low" (nice 10) or "normal"
    verbose: int = 0
    send_timeout_s: float = 5.0
    parent_pid: int = field(default_factory=os.getpid)


class WebPublisher:
    """The ``LivePublisher`` side of the web process: never blocks. Picklable to a camera worker process at its start
    (the queue and the shared frame buffers travel; each camera is published from one process only)."""

    def __init__(self, config: WebConfig, slots: FrameSlots, messages: Any) -> None:
        self.config = config
        self.slots = slots
        self._messages = messages
        self._index = {name: i for i, name in enumerate(config.cameras)}
        self._states: dict[str, dict] = {}
        self._pacer = FramePacer(config.max_fps)
        self.messages_dropped = 0

    def __getstate__(self) -> dict:
        return {"config": self.config, "slots": self.slots, "messages": self._messages}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"], state["slots"], state["messages"])

    def _send(self, message: tuple) -> None:
        try:
            self._messages.put_nowait(message)
        except (queue.Full, ValueError, OSError):  # web process stuck or gone: the analysis goes on
            self.messages_dropped += 1
            if self.messages_dropped == 1:
                log.error("the web server is not taking updates; the cameras go on")

    def publish_state(self, camera: str, state: dict) -> None:
        self._states[camera] = dict(state)
        self._send(("state", camera, state))

    def state(self, camera: str) -> dict:
        """The latest state this side sent for ``camera`` (a 'starting' placeholder before the first)."""
        return dict(self._states.get(camera) or {"camera": camera, "state": "starting"})

    def publish_status(self, camera: str, state: str) -> None:
        """Only the camera's state word ('ended'), keeping what the web side shows of it (reps, last rep)."""
        self._send(("status", camera, state))

    def publish_rep(self, camera: str, rep: dict) -> None:
        self._send(("rep", camera, rep))

    def publish_event(self, camera: str, event: dict) -> None:
        self._send(("event", camera, event))

    def publish_engine(self, figures: dict) -> None:
        self._send(("engine", figures))

    def wants_frame(self, camera: str) -> bool:
        """Whether ``publish_frame`` would take a frame of ``camera`` now (someone watches and one is due)."""
        index = self._index.get(camera)
        return index is not None and self.slots.wanted_side(index) > 0 and self._pacer.due(camera)

    def publish_frame(self, camera: str, image_bgr: np.ndarray) -> None:
        """Offer the latest overlay frame: copied (downscaled) to shared memory only while someone watches."""
        index = self._index.get(camera)
        side = self.slots.wanted_side(index) if index is not None else 0
        if side <= 0 or not self._pacer.take(camera):
            return
        try:
            self.slots.write(index, image_bgr, side)
        except ValueError as exc:
            log.debug("camera %s: frame not shown: %s", camera, exc)
            return
        self._send(("frame", index))


class WebProcess(WebPublisher):
    """Start the web process, then publish into it from the analyzer's camera threads (never blocks).

    ``publisher()`` is the part a camera worker process takes along."""

    def __init__(self, config: WebConfig) -> None:
        if config.max_fps <= 0 or min(config.max_width, config.tile_width) < 16:
            raise RealtimeError("--stream-fps must be more than 0, --stream-width and --tile-width at least 16")
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds model threads
        super().__init__(config, FrameSlots(len(config.cameras), config.max_width, self._ctx),
                         self._ctx.Queue(QUEUE_SIZE))
        self._proc: multiprocessing.process.BaseProcess | None = None
        self.url: str | None = None

    def publisher(self) -> WebPublisher:
        return WebPublisher(self.config, self.slots, self._messages)

    def __getstate__(self) -> dict:
        raise TypeError("pass WebProcess.publisher() to another process, not the WebProcess")

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 60.0) -> str:
        """Start the process and wait until it listens; returns its URL. RealtimeError (one line) if it cannot."""
        parent_end, child_end = self._ctx.Pipe(duplex=False)
        self._proc = self._ctx.Process(target=_web_main, args=(self.config, self.slots, self._messages, child_end),
                                       name="web", daemon=True)
        self._proc.start()
        child_end.close()
        try:
            if not parent_end.poll(timeout):
                raise RealtimeError(f"the web server did not start within {timeout:.0f} s")
            kind, detail = parent_end.recv()
        except EOFError:
            raise RealtimeError(f"the web server process ended at start (exit code {self._proc.exitcode})") from None
        finally:
            parent_end.close()
        if kind != "ready":
            self.stop(2.0)
            raise RealtimeError(detail)
        self.url = detail
        return detail

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    @property
    def exitcode(self) -> int | None:
        return None if self._proc is None else self._proc.exitcode

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the web process to end its streams and exit; kill it if it has not within ``timeout`` s."""
        if self._proc is None:
            return
        if self._proc.is_alive():
            try:
                self._messages.put(_STOP, timeout=1.0)
            except (queue.Full, ValueError, OSError):
                pass
            self._proc.join(timeout)
            if self._proc.is_alive():
                log.warning("the web server did not stop in %.0f s; killing it", timeout)
                self._proc.kill()
                self._proc.join(5.0)
        self._messages.close()
        self._messages.cancel_join_thread()  # what is still queued is for a process that is gone
        self._proc = None


# ---------------------------------------------------------------------- the web process
PRIORITIES = ("idle", "low", "normal")


def lower_priority(priority: str) -> None:
    """Lower this thread's (and its future threads') CPU priority: ``idle`` runs only on CPU time that nothing else
    wants (Linux SCHED_IDLE: a camera thread that wakes up takes the core at once), ``low`` is nice 10."""
    try:
        if priority == "idle" and hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        elif priority in ("idle", "low"):
            os.nice(10)
    except OSError as exc:
        log.warning("web server: cannot lower its CPU priority: %s", exc)


def _watch_parent(parent_pid: int) -> None:
    """Exit when the analyzer's process is gone (SIGKILL leaves no chance to stop us): free the port at once."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(0)
        time.sleep(0.25)


def _web_main(config: WebConfig, slots: FrameSlots, messages: Any, ready: Any) -> None:
    """Entry point of the web process: serve until told to stop or the analyzer is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the analyzer stops us
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(config.parent_pid,), name="web-parent-watch", daemon=True).start()
    from realtime.logs import setup_logging

    setup_logging(config.verbose)
    lower_priority(config.priority)  # before uvicorn and the encoder start their threads: they inherit it
    from realtime.web.app import create_app, start_server
    from realtime.web.hub import LiveHub

    hub = LiveHub(list(config.cameras), max_fps=config.max_fps, max_width=config.max_width,
                  tile_width=config.tile_width,
                  redact=list(config.redact))
    store = server = None
    try:
        try:
            if config.db_url is not None:
                from realtime.store import open_store

                store = open_store(config.db_url)
            server = start_server(create_app(hub, store, token=config.token, send_timeout_s=config.send_timeout_s),
                                  config.host, config.port)
        except RealtimeError as exc:
            ready.send(("error", str(exc)))
            return
        ready.send(("ready", server.url))
        ready.close()
        _relay(config, slots, messages, hub)
    finally:
        if server is not None:
            server.stop()
        hub.close()
        if store is not None:
            store.close()


def _relay(config: WebConfig, slots: FrameSlots, messages: Any, hub: Any) -> None:
    """Messages from the analyzer into the hub; the hub's viewer counts back to the analyzer (shared memory)."""
    names = list(config.cameras)
    shown = [0] * len(names)
    next_sync = 0.0
    while True:
        if time.monotonic() >= next_sync:  # frames are written only for watched cameras, no larger than needed
            next_sync = time.monotonic() + 0.1
            for i, name in enumerate(names):
                slots.set_wanted_side(i, hub.wanted_side(name))
        try:
            message = messages.get(timeout=0.1)
        except queue.Empty:
            continue
        kind = message[0]
        if kind == "stop":
            return
        if kind == "state":
            hub.publish_state(message[1], message[2])
        elif kind == "frame":
            index = message[1]
            frame = slots.read(index)
            if frame is not None and frame[0] != shown[index]:
                shown[index] = frame[0]
                hub.publish_frame(names[index], frame[1], copy=False, paced=True)
        elif kind == "rep":
            hub.publish_rep(message[1], message[2])
        elif kind == "event":
            hub.publish_event(message[1], message[2])
        elif kind == "engine":
            hub.publish_engine(message[1])
        elif kind == "status":
            hub.publish_state(message[1], {**hub.state(message[1]), "state": message[2]})
