"""Every JSON/CSV route, the pages, /healthz and /metrics; malformed and oversized input gets 4xx; static files
cannot escape their folder; camera URLs never reach a response."""

from __future__ import annotations

import csv
import io
import socket
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from realtime.store import SetRecorder
from realtime.web import LiveHub, create_app

pytest_plugins = ["webfakes"]  # fixtures (not a conftest.py: that would shadow tests/conftest.py)

SECRET_URL = "rtsp://coach:hunter2@10.0.0.7:554/stream1"


@pytest.fixture
def hub():
    h = LiveHub(["rack1", "floor"], redact=[SECRET_URL])
    yield h
    h.close()


@pytest.fixture
def filled(hub, store, fakes):
    """Two sets on rack1 (one closed), one on floor; live state and reps published."""

    def fake_rep(index: int, fault: bool = False) -> dict:
        return fakes.fake_rep("squat", index, fault=fault)

    rec = SetRecorder(store, "rack1", host="h", rest_s=30.0)
    for i in (1, 2, 3):
        rec.on_rep(fake_rep(i, fault=i == 2), 1_700_000_000.0 + 3 * i)
        hub.publish_rep("rack1", fake_rep(i, fault=i == 2))
    rec.tick(1_700_000_100.0)
    rec.on_rep(fake_rep(4), 1_700_000_200.0)
    SetRecorder(store, "floor", host="h").on_rep(fake_rep(1), 1_700_090_000.0)
    hub.publish_state("rack1", {"camera": "rack1", "state": "live", "label": "squat", "confidence": np.float32(0.9),
                                "exercise": "squat", "reps": 4, "last_rep": fake_rep(4), "cues": ["go deeper"],
                                "fps": 29.7, "frames_processed": 900, "frames_dropped": 3, "frames_skipped": 1800,
                                "error": None})
    hub.publish_state("floor", {"camera": "floor", "state": "reconnecting", "reps": 0, "fps": 0.0,
                                "frames_processed": 10, "frames_dropped": 0,
                                "error": f"cannot read {SECRET_URL}: timed out"})
    hub.publish_event("floor", {"type": "source_lost", "message": f"lost {SECRET_URL} (rtsp://10.0.0.8/x too)"})
    hub.publish_engine({"batch_size": 3.5, "latency_ms": 12.25, "backend": "onnx"})
    return store


@pytest.fixture
def client(hub, filled):
    return TestClient(create_app(hub, filled, token=None))


def test_cameras_and_one_camera(client):
    cams = client.get("/api/cameras").json()
    assert [c["name"] for c in cams] == ["rack1", "floor"]
    assert cams[0]["state"]["state"] == "live" and cams[0]["state"]["confidence"] == pytest.approx(0.9)
    one = client.get("/api/cameras/rack1").json()
    assert one["name"] == "rack1" and [r["index"] for r in one["reps"]] == [1, 2, 3]
    assert one["state"]["last_rep"]["index"] == 4 and one["viewers"] == 0
    floor = client.get("/api/cameras/floor").json()
    assert floor["state"]["state"] == "reconnecting" and floor["events"][0]["type"] == "source_lost"
    assert client.get("/api/cameras/nope").status_code == 404
    assert client.get("/api/engine").json() == {"batch_size": 3.5, "latency_ms": 12.25, "backend": "onnx"}


def test_sets_and_reps(client):
    sets = client.get("/api/sets").json()
    assert [(s["camera"], s["reps"], s["status"]) for s in sets] == [
        ("floor", 1, "open"), ("rack1", 1, "open"), ("rack1", 3, "done")]
    done = sets[2]
    assert done["fault_reps"] == 1 and done["duration_s"] == pytest.approx(7.5)
    assert [s["camera"] for s in client.get("/api/sets?camera=rack1").json()] == ["rack1", "rack1"]
    assert len(client.get("/api/sets?since=1700000150").json()) == 2
    assert len(client.get("/api/sets?since=1700000150&until=1700000300").json()) == 1
    assert len(client.get("/api/sets?limit=1").json()) == 1
    day = time.strftime("%Y-%m-%d", time.localtime(1_700_090_000))
    assert "floor" in {s["camera"] for s in client.get(f"/api/sets?since={day}").json()}
    assert client.get(f"/api/sets/{done['id']}").json()["reps"] == 3
    reps = client.get(f"/api/sets/{done['id']}/reps").json()
    assert [r["n"] for r in reps] == [1, 2, 3] and reps[1]["faults"] == ["knees cave in"]
    assert reps[0]["measures"]["knee_min"] == 81.0
    assert client.get("/api/sets/999999/reps").status_code == 404
    assert client.get("/api/sets/999999").status_code == 404


def test_csv_exports(client):
    response = client.get("/api/sets.csv?camera=rack1")
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["reps"] for r in rows] == ["1", "3"] and rows[1]["fault_reps"] == "1"
    set_id = rows[1]["id"]
    reps = list(csv.DictReader(io.StringIO(client.get(f"/api/sets/{set_id}/reps.csv").text)))
    assert [r["n"] for r in reps] == ["1", "2", "3"]
    assert reps[1]["faults"] == "knees cave in" and float(reps[0]["knee_min"]) == 81.0


def test_pages_and_static_files(client):
    for path, marker in (("/", "wall.js"), ("/history", "history.js"), ("/cameras/rack1", "camera.js")):
        response = client.get(path)
        assert response.status_code == 200 and marker in response.text, path
        assert "default-src 'self'" in response.headers["content-security-policy"]
    assert client.get("/cameras/nope").status_code == 404
    for name in ("style.css", "common.js", "wall.js", "camera.js", "history.js"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/static/nope.js").status_code == 404


def test_healthz_and_metrics(client, hub):
    health = client.get("/healthz").json()
    assert health == {"status": "ok", "database": "ok", "cameras": {"rack1": "live", "floor": "reconnecting"}}
    text = client.get("/metrics").text
    assert 'realtime_camera_fps{camera="rack1"} 29.7' in text
    assert 'realtime_camera_frames_dropped_total{camera="rack1"} 3.0' in text
    assert 'realtime_camera_frames_skipped_total{camera="rack1"} 1800.0' in text
    assert 'realtime_camera_frames_skipped_total{camera="floor"}' not in text  # a camera that does not say: no line
    assert 'realtime_camera_frames_processed_total{camera="rack1"} 900.0' in text
    assert 'realtime_camera_reps_total{camera="rack1"} 3.0' in text
    assert 'realtime_camera_state{camera="floor",state="reconnecting"} 1.0' in text
    assert "realtime_engine_batch_size 3.5" in text and "realtime_engine_latency_ms 12.25" in text
    assert "realtime_web_clients" in text


def test_without_database(hub):
    client = TestClient(create_app(hub, None, token=None))
    assert client.get("/api/sets").status_code == 503
    assert client.get("/api/sets/1/reps").status_code == 503
    assert client.get("/healthz").json()["database"] == "none"


def test_database_down_is_503_not_a_traceback(hub, filled):
    client = TestClient(create_app(hub, filled, token=None))
    filled._engine.dispose()
    filled.url = filled.url.set(database="/nonexistent/folder/x.sqlite")
    from sqlalchemy import create_engine

    filled._engine = create_engine(filled.url)
    response = client.get("/api/sets")
    assert response.status_code == 503 and "cannot read sets" in response.json()["detail"]
    assert client.get("/healthz").status_code == 503


@pytest.mark.parametrize(
    "path, status",
    [
        ("/api/sets?since=yesterday", 400),
        ("/api/sets?since=1e400", 400),
        ("/api/sets?since=-5", 400),
        ("/api/sets?until=2024-13-45", 400),
        ("/api/sets?since=" + "9" * 41, 422),
        ("/api/sets?limit=abc", 422),
        ("/api/sets?limit=0", 422),
        ("/api/sets?limit=" + "9" * 30, 422),
        ("/api/sets?camera=" + "x" * 129, 422),
        ("/api/sets?camera=" + "x" * 5000, 414),
        ("/api/sets/abc/reps", 422),
        ("/api/sets/-1/reps", 422),
        ("/api/sets/" + "9" * 40 + "/reps", 422),
        ("/api/sets/1.5", 422),
        ("/api/cameras/" + "c" * 200, 422),
        ("/api/" + "a" * 3000, 414),
        ("/api/events?camera=nope", 404),
        ("/api/cameras/nope/stream.mjpeg", 404),
        ("/api/cameras/rack1/stream.mjpeg?size=huge", 422),
        ("/api/cameras/rack1/stream.mjpeg?size=" + "t" * 40, 422),
        ("/api/sets.csv?since=%ZZ", 400),
    ],
)
def test_malformed_and_oversized_params_are_4xx(client, path, status):
    response = client.get(path)
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text and len(response.text) < 1000


def test_no_camera_url_or_credential_in_any_response(client):
    bodies = [client.get(p).text for p in ("/api/cameras", "/api/cameras/floor", "/api/cameras/rack1", "/healthz",
                                          "/metrics", "/api/sets", "/api/sets.csv", "/")]
    for body in bodies:
        assert "hunter2" not in body and "10.0.0.7" not in body and "10.0.0.8" not in body and "rtsp://" not in body
    assert "<source>" in client.get("/api/cameras/floor").text  # the error text survives, minus the URL


TRAVERSALS = [
    "/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static/%2e%2e%2fapp.py",
    "/static/%2e%2e%2f%2e%2e%2fstore%2fstore.py", "/static/..%5capp.py", "/static//etc/passwd",
    "/static/%2fetc%2fpasswd", "/static/....//app.py", "/static/%00", "/static/.%2e/.%2e/.%2e/.%2e/etc/passwd",
]


def _leaked(body: bytes) -> bool:
    return b"def create_app" in body or b"root:" in body or b"class Store" in body


@pytest.mark.parametrize("path", TRAVERSALS)
def test_static_files_cannot_escape_their_folder(client, path):
    response = client.get(path)
    assert response.status_code in (400, 404), (path, response.status_code)
    assert not _leaked(response.content)


def test_static_traversal_over_a_raw_socket(hub, filled, live_server):
    """Unnormalised paths sent byte for byte (a client library would clean them up first)."""
    server = live_server(hub, filled)
    for path in TRAVERSALS + ["/static/../../../../etc/passwd", "/../realtime/web/app.py"]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        status = int(data.split(b" ", 2)[1])
        assert status in (400, 404), (path, data[:200])
        assert not _leaked(data)
