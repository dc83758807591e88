#!/usr/bin/env python3
"""RTSP fault drill: kill (SIGKILL) and restart a local RTSP server N times while a Capture reads it.

Reports how many reconnects succeeded, the downtime per cycle and the longest gap without frames. Needs
Debian's /usr/bin/python3 with python3-gi + gir1.2-gst-rtsp-server-1.0 (runs tests/rtsp_server.py).

    python bench/rtsp_faults.py --cycles 100 [--up 2.0] [--down 0.5] [--transport tcp]
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realtime.sources.capture import Capture  # noqa: E402

SERVER = ROOT / "tests" / "rtsp_server.py"


def make_clip(path: Path, seconds: float = 4.0, fps: int = 30) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"g": "15", "preset": "ultrafast", "tune": "zerolatency"})
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.full((240, 320, 3), (i * 3) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def start_server(clip: Path, port: int, python: str) -> subprocess.Popen:
    proc = subprocess.Popen([python, str(SERVER), "--file", str(clip), "--port", str(port), "--user", "bench",
                             "--password", "secret"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("READY"):
        proc.kill()
        raise SystemExit(f"RTSP server did not start ({line!r}); is {python} able to import GstRtspServer?")
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    proc.stdout.close()


def main() -> int:
    from realtime.logs import add_verbose_argument, setup_logging

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=100, help="kill/restart cycles (default 100)")
    ap.add_argument("--up", type=float, default=2.0, help="seconds of streaming before each kill")
    ap.add_argument("--down", type=float, default=0.5, help="seconds the server stays dead")
    ap.add_argument("--back-timeout", type=float, default=20.0, help="seconds to wait for a reconnect")
    ap.add_argument("--transport", choices=("tcp", "udp"), default="tcp")
    ap.add_argument("--max-backoff", type=float, default=2.0)
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter with gi (GstRtspServer)")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_verbose_argument(ap)
    args = ap.parse_args()
    setup_logging(args.verbose)

    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "loop.mp4")
        with socket.create_server(("127.0.0.1", 0)) as s:
            port = s.getsockname()[1]
        events: list[dict] = []
        back = threading.Event()

        def on_event(e: dict) -> None:
            events.append(e)
            if e["state"] == "back":
                back.set()

        proc = start_server(clip, port, args.python)
        cap = Capture(f"rtsp://bench:secret@127.0.0.1:{port}/stream", rtsp_transport=args.transport,
                      read_timeout_s=3.0, open_timeout_s=3.0, max_backoff_s=args.max_backoff, on_event=on_event)
        cap.open().start()

        frame_times: list[float] = []
        last_index = [-1]
        order_ok = [True]
        done = threading.Event()

        def consume() -> None:
            while not done.is_set():
                f = cap.get(0.05)
                if f is not None:
                    frame_times.append(time.monotonic())
                    order_ok[0] &= f.index > last_index[0]
                    last_index[0] = f.index

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        ok = failed = 0
        downtimes: list[float] = []
        t_start = time.monotonic()
        try:
            for cycle in range(1, args.cycles + 1):
                time.sleep(args.up)
                back.clear()
                kill(proc)
                time.sleep(args.down)
                proc = start_server(clip, port, args.python)
                if back.wait(args.back_timeout):
                    ok += 1
                    downtimes.append(next(e for e in reversed(events) if e["state"] == "back")["downtime_s"])
                else:
                    failed += 1
                print(f"cycle {cycle}/{args.cycles}: {'back' if back.is_set() else 'NOT BACK'} "
                      f"state={cap.state} frames={len(frame_times)}", flush=True)
            time.sleep(args.up)
        finally:
            t0 = time.monotonic()
            cap.stop()
            stop_s = time.monotonic() - t0
            done.set()
            consumer.join(2)
            kill(proc)

    gaps = np.diff(frame_times) if len(frame_times) > 1 else np.array([0.0])
    summary = {
        "cycles": args.cycles,
        "transport": args.transport,
        "reconnects_ok": ok,
        "reconnects_failed": failed,
        "lost_events": sum(e["state"] == "lost" for e in events),
        "back_events": sum(e["state"] == "back" for e in events),
        "frames": len(frame_times),
        "frames_dropped": cap.stats().frames_dropped,
        "indices_increasing": order_ok[0],
        "longest_gap_s": round(float(gaps.max()), 3),
        "median_downtime_s": round(statistics.median(downtimes), 3) if downtimes else None,
        "max_downtime_s": round(max(downtimes), 3) if downtimes else None,
        "stop_s": round(stop_s, 3),
        "credentials_leaked": any("secret" in json.dumps(e) for e in events),
        "wall_s": round(time.monotonic() - t_start, 1),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{ok}/{args.cycles} reconnects succeeded ({failed} failed); longest gap without frames "
              f"{summary['longest_gap_s']} s (kill -> restart {args.down} s)")
        for k, v in summary.items():
            print(f"  {k}: {v}")
    return 0 if failed == 0 and order_ok[0] else 1


if __name__ == "__main__":
    sys.exit(main())
