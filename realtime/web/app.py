"""The web view: camera wall, one camera large, history of sets; JSON API, push channel, MJPEG video, metrics.

Pages are static files shipped in ``realtime/web/static`` (plain JS, no build step). Live data comes from the
``LiveHub`` the analyzer publishes into; history from the ``Store``. ``start_server`` runs uvicorn in a thread.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import math
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.staticfiles import StaticFiles

from realtime.errors import RealtimeError
from realtime.store import Store, StoreError
from realtime.web.auth import Guard
from realtime.web.hub import BOUNDARY, LiveHub
from realtime.web.metrics import HubCollector
from realtime.web.streams import PushStream, event_chunks, mjpeg_chunks, quiet_dropped_clients

STATIC = FilePath(__file__).resolve().parent / "static"
PAGES = {"wall": STATIC / "wall.html", "camera": STATIC / "camera.html", "history": STATIC / "history.html"}
NO_STORE = {"Cache-Control": "no-store"}
MAX_SET_ID = 2**62

CameraName = Annotated[str, Path(min_length=1, max_length=128)]
SetId = Annotated[int, Path(ge=1, le=MAX_SET_ID)]
CameraQuery = Annotated[str | None, Query(max_length=128)]
TimeQuery = Annotated[str | None, Query(max_length=40)]
LimitQuery = Annotated[int, Query(ge=1, le=5000)]
SizeQuery = Annotated[str, Query(pattern="^(full|tile)$")]


def parse_time(name: str, value: str | None) -> float | None:
    """``YYYY-MM-DD``, an ISO date-time (naive = server's local time) or epoch seconds -> epoch seconds; else 400."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number) or not 0 <= number < 1e11:
            raise HTTPException(400, f"{name}: epoch seconds out of range")
        return number
    try:
        return datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError, OSError):
        raise HTTPException(400, f"{name}: expected YYYY-MM-DD, an ISO date-time or epoch seconds") from None


def _csv_cell(value: Any) -> Any:
    """Keep spreadsheet programs from running a cell as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv_response(rows: list[list[Any]], filename: str) -> Response:
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in rows:
        writer.writerow([_csv_cell(v) for v in row])
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"', **NO_STORE})


def create_app(
    hub: LiveHub,
    store: Store | None,
    *,
    token: str | None,
    metrics_registry: CollectorRegistry | None = None,
    send_timeout_s: float = 5.0,
) -> FastAPI:
    """The ASGI app. ``token`` None = open (loopback use); else every route but /login demands it."""
    app = FastAPI(title="Gym cameras", docs_url=None, redoc_url=None, openapi_url=None)
    registry = metrics_registry if metrics_registry is not None else CollectorRegistry()
    registry.register(HubCollector(hub))
    app.state.hub, app.state.store, app.state.token = hub, store, token or None
    app.add_middleware(Guard, token=token)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        where = ".".join(str(p) for p in errors[0].get("loc", ())) if errors else "request"
        message = errors[0].get("msg", "invalid") if errors else "invalid"
        return JSONResponse({"detail": f"{where}: {message}"}, status_code=422, headers=NO_STORE)

    @app.exception_handler(StoreError)
    async def _store_down(_request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers=NO_STORE)

    def need_camera(name: str) -> str:
        if not hub.has_camera(name):
            raise HTTPException(404, "no such camera")
        return name

    def need_store() -> Store:
        if store is None:
            raise HTTPException(503, "no database configured")
        return store

    # ------------------------------------------------------------------ pages
    @app.get("/", include_in_schema=False)
    def wall_page() -> FileResponse:
        return FileResponse(PAGES["wall"], headers=NO_STORE)

    @app.get("/cameras/{name}", include_in_schema=False)
    def camera_page(name: CameraName) -> FileResponse:
        need_camera(name)
        return FileResponse(PAGES["camera"], headers=NO_STORE)

    @app.get("/history", include_in_schema=False)
    def history_page() -> FileResponse:
        return FileResponse(PAGES["history"], headers=NO_STORE)

    @app.get("/logout", include_in_schema=False)
    def logout() -> Response:
        return Response(status_code=303, headers={"Location": "/login", "Set-Cookie": "rt_session=; Path=/; Max-Age=0"})

    app.mount("/static", StaticFiles(directory=STATIC, follow_symlink=False), name="static")

    # ------------------------------------------------------------------ live API
    @app.get("/api/cameras")
    def cameras() -> JSONResponse:
        return JSONResponse([{"name": n, "state": hub.state(n)} for n in hub.cameras()], headers=NO_STORE)

    @app.get("/api/cameras/{name}")
    def camera(name: CameraName) -> JSONResponse:
        need_camera(name)
        viewers = hub.stats()["cameras"].get(name, {}).get("viewers", 0)
        body = {"name": name, "state": hub.state(name), "reps": hub.recent_reps(name),
                "events": hub.recent_events(name), "viewers": viewers}
        return JSONResponse(body, headers=NO_STORE)

    @app.get("/api/cameras/{name}/stream.mjpeg")
    async def stream(name: CameraName, size: SizeQuery = "full") -> PushStream:
        need_camera(name)
        sub = hub.subscribe_frames(name, size)
        return PushStream(
            mjpeg_chunks(hub, sub), f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            on_close=lambda stalled: hub.unsubscribe(sub, stalled=stalled), send_timeout_s=send_timeout_s,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get("/api/cameras/{name}/frame.jpg")
    def frame(name: CameraName) -> Response:
        need_camera(name)
        jpeg = hub.latest_jpeg(name)
        if jpeg is None:
            raise HTTPException(404, "no frame encoded yet (frames are encoded only while someone watches)")
        return Response(jpeg, media_type="image/jpeg", headers=NO_STORE)

    @app.get("/api/events")
    async def events(camera: CameraQuery = None) -> PushStream:
        if camera is not None:
            need_camera(camera)
        sub = hub.subscribe_events(camera)
        return PushStream(
            event_chunks(hub, sub), "text/event-stream",
            on_close=lambda stalled: hub.unsubscribe(sub, stalled=stalled), send_timeout_s=send_timeout_s,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get("/api/engine")
    def engine() -> JSONResponse:
        return JSONResponse(hub.engine(), headers=NO_STORE)

    # ------------------------------------------------------------------ history API
    def query_sets(camera: str | None, since: str | None, until: str | None, limit: int) -> list[dict]:
        lo, hi = parse_time("since", since), parse_time("until", until)
        return need_store().sets(camera=camera, since=lo, limit=limit, until=hi)

    @app.get("/api/sets")
    def sets(camera: CameraQuery = None, since: TimeQuery = None, until: TimeQuery = None,
             limit: LimitQuery = 500) -> JSONResponse:
        return JSONResponse(query_sets(camera, since, until, limit), headers=NO_STORE)

    @app.get("/api/sets.csv")
    def sets_csv(camera: CameraQuery = None, since: TimeQuery = None, until: TimeQuery = None,
                 limit: LimitQuery = 5000) -> Response:
        keys = ["id", "camera", "host", "exercise", "status", "started_iso", "ended_iso", "duration_s", "reps",
                "fault_reps"]
        rows = [keys] + [[s[k] for k in keys] for s in query_sets(camera, since, until, limit)]
        return _csv_response(rows, "sets.csv")

    def one_set(set_id: int) -> dict:
        found = need_store().get_set(set_id)
        if found is None:
            raise HTTPException(404, "no such set")
        return found

    @app.get("/api/sets/{set_id}")
    def get_set(set_id: SetId) -> JSONResponse:
        return JSONResponse(one_set(set_id), headers=NO_STORE)

    @app.get("/api/sets/{set_id}/reps")
    def set_reps(set_id: SetId) -> JSONResponse:
        one_set(set_id)
        return JSONResponse(need_store().set_reps(set_id), headers=NO_STORE)

    @app.get("/api/sets/{set_id}/reps.csv")
    def set_reps_csv(set_id: SetId) -> Response:
        one_set(set_id)
        reps = need_store().set_reps(set_id)
        measures = sorted({k for r in reps for k in r.get("measures", {})})
        head = ["set_id", "n", "index", "camera", "exercise", "wall_iso", "duration_s", "range_of_motion", "view",
                "faults"]
        rows: list[list[Any]] = [head + measures]
        for r in reps:
            rows.append([r.get("set_id"), r.get("n"), r.get("index"), r.get("camera"), r.get("exercise"),
                         r.get("wall_iso"), r.get("duration_s"), r.get("range_of_motion"), r.get("view"),
                         ";".join(r.get("faults", []))] + [r.get("measures", {}).get(m) for m in measures])
        return _csv_response(rows, f"set-{set_id}-reps.csv")

    # ------------------------------------------------------------------ operations
    @app.get("/healthz")
    def healthz() -> JSONResponse:
        database = "none"
        status = 200
        if store is not None:
            try:
                store.ping()
                database = "ok"
            except StoreError as exc:
                database, status = f"error: {exc}", 503
        states = {n: hub.state(n).get("state") for n in hub.cameras()}
        body = {"status": "ok" if status == 200 else "degraded", "database": database, "cameras": states}
        return JSONResponse(body, status_code=status, headers=NO_STORE)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST, headers=NO_STORE)

    return app


# ---------------------------------------------------------------------- server
def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ServerHandle:
    """A running uvicorn server; ``url`` is where it listens."""

    url: str
    host: str
    port: int
    _server: uvicorn.Server
    _thread: threading.Thread
    _hub: LiveHub | None

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """End every stream, stop accepting, wait up to ``timeout`` s for the server thread."""
        if self._hub is not None:
            self._hub.close_clients()
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(1.0)


def start_server(app: FastAPI, host: str = "127.0.0.1", port: int = 8080, *, ready_timeout: float = 10.0) -> ServerHandle:
    """Serve ``app`` with uvicorn on a background thread. Port 0 = a free port. Raises RealtimeError (one line)."""
    token = getattr(app.state, "token", None)
    if not _is_loopback(host) and not token:
        raise RealtimeError(f"binding {host} (not loopback) needs an access token (--token)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OverflowError) as exc:
        raise RealtimeError(f"cannot listen on {host}:{port}: {exc}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            # A peer that stops reading (zero window) is aborted by the kernel after 30 s (inherited by accepted sockets).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 30_000)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise RealtimeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound_port = sock.getsockname()[1]
    quiet_dropped_clients()
    config = uvicorn.Config(app, log_level="warning", access_log=False, ws="none", lifespan="off",
                            timeout_graceful_shutdown=2, timeout_keep_alive=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="web-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + ready_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RealtimeError(f"the web server on {host}:{bound_port} did not start")
        time.sleep(0.01)
    shown = f"[{host}]" if ":" in host else host
    return ServerHandle(f"http://{shown}:{bound_port}/", host, bound_port, server, thread,
                        getattr(app.state, "hub", None))
