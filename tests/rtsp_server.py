#!/usr/bin/python3
"""A small RTSP server on 127.0.0.1 that streams an H.264 mp4 in a loop at real speed (GStreamer RTSP server).

Run it with Debian's ``/usr/bin/python3`` (the only interpreter that has ``gi``): it needs python3-gi,
gir1.2-gst-rtsp-server-1.0 and the GStreamer base/good/bad plugins (qtdemux, h264parse, rtph264pay).

    /usr/bin/python3 tests/rtsp_server.py --file clip.mp4 [--port 8554] [--path /stream] [--user u --password p]

The mp4's H.264 access units are read once into memory and pushed into an ``appsrc`` for every client, with
timestamps shifted by one clip length per loop; the RTSP server's sinks sync to the clock, so the stream plays at
the clip's frame rate with no re-encoding. Prints ``READY <port>`` on stdout once it listens; SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


class Clip:
    """Every H.264 access unit of an mp4 (avc format), with its timestamps, read once."""

    def __init__(self, path: str) -> None:
        pipe = Gst.parse_launch(
            "filesrc name=src ! qtdemux ! h264parse ! video/x-h264,stream-format=avc,alignment=au "
            "! appsink name=sink sync=false"
        )
        pipe.get_by_name("src").set_property("location", path)
        sink = pipe.get_by_name("sink")
        pipe.set_state(Gst.State.PLAYING)
        self.samples: list[tuple[bytes, int, int, int, bool]] = []  # data, pts, dts, duration, is delta unit
        self.caps: Gst.Caps | None = None
        while True:
            sample = sink.emit("pull-sample")
            if sample is None:
                break
            if self.caps is None:
                self.caps = sample.get_caps()
            buf = sample.get_buffer()
            data = buf.extract_dup(0, buf.get_size())
            pts = buf.pts if buf.pts != Gst.CLOCK_TIME_NONE else 0
            dts = buf.dts if buf.dts != Gst.CLOCK_TIME_NONE else pts
            dur = buf.duration if buf.duration != Gst.CLOCK_TIME_NONE else Gst.SECOND // 30
            self.samples.append((data, pts, dts, dur, buf.has_flags(Gst.BufferFlags.DELTA_UNIT)))
        bus = pipe.get_bus()
        err = bus.pop_filtered(Gst.MessageType.ERROR)
        pipe.set_state(Gst.State.NULL)
        if err is not None or not self.samples or self.caps is None:
            reason = err.parse_error()[0].message if err is not None else "no H.264 video track"
            raise SystemExit(f"rtsp_server: cannot read {path}: {reason} (need an mp4 with H.264 video)")
        start = min(min(s[1], s[2]) for s in self.samples)
        end = max(max(s[1], s[2]) + s[3] for s in self.samples)
        self.period = end - start  # one loop, ns
        self.start = start


class LoopFactory(GstRtspServer.RTSPMediaFactory):
    """One appsrc pipeline per client; a feeder thread pushes the clip in a loop until the client goes away."""

    def __init__(self, clip: Clip) -> None:
        super().__init__()
        self.clip = clip
        self.set_launch("( appsrc name=src format=time is-live=false block=true max-bytes=2000000 "
                        "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )")
        self.set_shared(False)
        self.connect("media-configure", self._on_configure)

    def _on_configure(self, _factory, media) -> None:
        src = media.get_element().get_by_name("src")
        src.set_property("caps", self.clip.caps)
        stop = threading.Event()
        media.connect("unprepared", lambda *_: stop.set())
        threading.Thread(target=self._feed, args=(src, stop), daemon=True).start()

    def _feed(self, src, stop: threading.Event) -> None:
        loop = 0
        while not stop.is_set():
            offset = loop * self.clip.period - self.clip.start
            for data, pts, dts, dur, delta in self.clip.samples:
                buf = Gst.Buffer.new_wrapped(data)
                buf.pts, buf.dts, buf.duration = pts + offset, dts + offset, dur
                if delta:
                    buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
                # push-buffer blocks while appsrc is full (block=true); anything but OK means the client left.
                if stop.is_set() or src.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                    return
            loop += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", required=True, help="mp4 with H.264 video")
    ap.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = any free port)")
    ap.add_argument("--path", default="/stream", help="mount point")
    ap.add_argument("--user", default=None)
    ap.add_argument("--password", default=None)
    args = ap.parse_args()

    Gst.init(None)
    clip = Clip(args.file)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = LoopFactory(clip)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", args.user)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role(args.user, "media.factory.access", True)
        perms.add_permission_for_role(args.user, "media.factory.construct", True)
        factory.set_permissions(perms)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
