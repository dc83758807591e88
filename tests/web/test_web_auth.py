"""With a token, every page, API route, static file, video stream and push channel demands it (401 otherwise);
the login page, the cookie, ?token= and Bearer all work; binding beyond loopback needs a token."""

from __future__ import annotations

import socket

import httpx
import pytest
from fastapi.testclient import TestClient

from realtime.errors import RealtimeError
from realtime.web import LiveHub, create_app, new_token, start_server
from realtime.web import auth as auth_module

pytest_plugins = ["webfakes"]  # fixtures (not a conftest.py: that would shadow tests/conftest.py)

TOKEN = "correct-horse-battery-staple-42"
PLAIN_ROUTES = [
    "/", "/history", "/cameras/cam0", "/static/style.css", "/static/wall.js", "/api/cameras", "/api/cameras/cam0",
    "/api/cameras/cam0/frame.jpg", "/api/engine", "/api/sets", "/api/sets.csv", "/api/sets/1", "/api/sets/1/reps",
    "/api/sets/1/reps.csv", "/healthz", "/metrics", "/logout",
]
STREAM_ROUTES = ["/api/cameras/cam0/stream.mjpeg", "/api/events", "/api/events?camera=cam0"]
ALL_ROUTES = PLAIN_ROUTES + STREAM_ROUTES


@pytest.fixture
def hub():
    h = LiveHub(["cam0"])
    h.publish_state("cam0", {"state": "live", "reps": 2})
    yield h
    h.close()


@pytest.fixture
def client(hub, store):
    store.record_rep("cam0", {"exercise": "squat", "index": 1, "duration_s": 1.0}, host="h", wall_t=100.0)
    return TestClient(create_app(hub, store, token=TOKEN), follow_redirects=False)


def _with(path: str, token: str) -> str:
    return path + ("&" if "?" in path else "?") + "token=" + token


@pytest.mark.parametrize("path", ALL_ROUTES)
def test_every_route_refuses_without_or_with_a_wrong_token(client, path):
    attempts = [
        {},
        {"headers": {"Authorization": "Bearer wrong"}},
        {"headers": {"Authorization": f"Basic {TOKEN}"}},
        {"headers": {"Authorization": f"Bearer {TOKEN}x"}},
        {"headers": {"Cookie": f"{auth_module.COOKIE}={TOKEN}"}},  # the raw token is not a session value
        {"headers": {"Cookie": f"{auth_module.COOKIE}=deadbeef"}},
        {"headers": {"Authorization": "Bearer ünïcode".encode()}},
    ]
    for kwargs in attempts:
        response = client.get(path, **kwargs)
        assert response.status_code == 401, (path, kwargs, response.status_code)
        assert "cam0" not in response.text or path.startswith("/cameras")  # nothing about the cameras leaks
    response = client.get(_with(path, "wrong"))
    assert response.status_code == 401
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("path", PLAIN_ROUTES[:-1])
def test_every_route_accepts_bearer_query_and_cookie(client, path):
    assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code != 401
    via_query = client.get(_with(path, TOKEN))
    assert via_query.status_code != 401
    cookie = via_query.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    fresh = TestClient(client.app, follow_redirects=False)
    assert fresh.get(path, headers={"Cookie": f"{auth_module.COOKIE}={value}"}).status_code != 401


def test_pages_show_the_login_form_with_401_and_api_says_json(client):
    page = client.get("/history")
    assert page.status_code == 401 and "<form" in page.text and page.headers["www-authenticate"].startswith("Bearer")
    api = client.get("/api/sets")
    assert api.status_code == 401 and api.json() == {"detail": "missing or wrong token"}


def test_login_page(client):
    assert client.get("/login").status_code == 200
    wrong = client.post("/login", data={"token": "nope", "next": "/history"})
    assert wrong.status_code == 401 and "Wrong token" in wrong.text and "set-cookie" not in wrong.headers
    right = client.post("/login", data={"token": TOKEN, "next": "/history"})
    assert right.status_code == 303 and right.headers["location"] == "/history"
    assert right.headers["set-cookie"].startswith(auth_module.COOKIE + "=")
    assert client.get("/api/sets").status_code == 200  # the client keeps the cookie
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example", ""):
        assert client.post("/login", data={"token": TOKEN, "next": evil}).headers["location"] == "/"
    assert client.post("/login", content=b"token=" + b"a" * 10000,
                       headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 413
    assert client.put("/login").status_code == 405


def test_tokens_are_compared_in_constant_time(client, monkeypatch):
    calls = []
    real = auth_module.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", spy)
    client.get("/api/cameras", headers={"Authorization": "Bearer guess"})
    assert calls and calls[0] == (b"guess", TOKEN.encode())


def test_streams_and_push_channel_with_token_over_http(hub, store, live_server):
    server = live_server(hub, store, token=TOKEN)
    for path in STREAM_ROUTES:
        for headers in ({}, {"Authorization": "Bearer nope"}):
            assert httpx.get(server.url.rstrip("/") + path, headers=headers, timeout=5).status_code == 401
        with httpx.stream("GET", server.url.rstrip("/") + path, timeout=5,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status_code == 200
            first = next(response.iter_bytes())
            assert first.startswith(b"--frame") or first.startswith(b"retry:")


def test_non_loopback_bind_needs_a_token(hub):
    with pytest.raises(RealtimeError, match="needs an access token"):
        start_server(create_app(hub, None, token=None), "0.0.0.0", 0)


def test_port_in_use_is_a_one_line_error(hub):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(RealtimeError, match=f"cannot listen on 127.0.0.1:{port}") as info:
            start_server(create_app(hub, None, token=None), "127.0.0.1", port)
    assert "\n" not in str(info.value)


def test_new_token_is_random_and_long():
    assert len({new_token() for _ in range(20)}) == 20 and len(new_token()) >= 32
