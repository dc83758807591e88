"""Access control and request hygiene for the web view (a pure ASGI middleware in front of every route).

With a token set, every request except the login page must carry it: ``Authorization: Bearer <token>``,
``?token=<token>`` (a page opened that way also gets the session cookie, so its video, push channel and API calls
work), or the ``rt_session`` cookie set by ``POST /login``. The cookie holds an HMAC of the token, not the token.
All comparisons use ``hmac.compare_digest``. Without a token (loopback only) everything is open.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, quote

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "rt_session"
COOKIE_MAX_AGE_S = 30 * 24 * 3600
MAX_QUERY_BYTES = 2048
MAX_PATH_BYTES = 1024
MAX_LOGIN_BODY = 4096
PUBLIC_PATHS = frozenset({"/login"})

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
     b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
]


def new_token() -> str:
    """A random access token (URL-safe, 32 characters)."""
    return secrets.token_urlsafe(24)


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"realtime-web-session v1", hashlib.sha256).hexdigest()


def token_matches(candidate: str | None, token: str) -> bool:
    if not candidate:
        return False
    return hmac.compare_digest(candidate.encode("utf-8", "surrogateescape"), token.encode())


def cookie_header(token: str) -> bytes:
    return (f"{COOKIE}={session_value(token)}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict").encode()


def safe_next(target: str | None) -> str:
    """Only a local absolute path may follow the login (no //host, no scheme, no backslash)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or len(target) > 512:
        return "/"
    return target


def login_page(next_path: str = "/", message: str = "") -> bytes:
    note = f'<p class="err">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Sign in - gym cameras</title>
<style>body{{font-family:system-ui,sans-serif;background:#111;color:#eee;display:flex;justify-content:center;
align-items:center;height:100vh;margin:0}}form{{background:#1d1f24;padding:2em;border-radius:10px;min-width:18em}}
input{{width:100%;padding:.6em;margin:.6em 0;box-sizing:border-box;background:#111;color:#eee;border:1px solid #444;
border-radius:6px}}button{{padding:.6em 1.4em;background:#2f7de1;color:#fff;border:0;border-radius:6px}}
.err{{color:#ff6b6b}}</style></head>
<body><form method="post" action="/login" id="login"><h2>Gym cameras</h2>{note}
<label for="token">Access token</label>
<input type="password" id="token" name="token" autocomplete="current-password" autofocus maxlength="256">
<input type="hidden" name="next" value="{html.escape(safe_next(next_path))}">
<button type="submit">Sign in</button></form></body></html>""".encode()


def _is_page(path: str) -> bool:
    return not (path.startswith("/api/") or path.startswith("/static/") or path in ("/metrics", "/healthz"))


async def _respond(send: Send, status: int, body: bytes, content_type: bytes, extra: list | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store"), *SECURITY_HEADERS, *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, detail: str, extra: list | None = None) -> None:
    await _respond(send, status, json.dumps({"detail": detail}).encode(), b"application/json", extra)


class Guard:
    """Size limits, token check, login page and security headers for every HTTP request."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token or None

    def _credentials(self, scope: Scope) -> tuple[bool, bool]:
        """(authorised, authorised through ?token=)."""
        token = self.token
        assert token is not None
        headers = {}
        cookies = []
        for key, value in scope.get("headers", []):
            if key == b"cookie":
                cookies.append(value.decode("latin-1"))
            else:
                headers[key] = value.decode("latin-1")
        auth = headers.get(b"authorization", "")
        if auth[:7].lower() == "bearer " and token_matches(auth[7:].strip(), token):
            return True, False
        for cookie_text in cookies:
            jar = SimpleCookie()
            try:
                jar.load(cookie_text)
            except Exception:  # malformed cookie header: treat as absent
                continue
            if COOKIE in jar and token_matches(jar[COOKIE].value, session_value(token)):
                return True, False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), max_num_fields=32)
        for value in query.get("token", [])[:1]:
            if token_matches(value, token):
                return True, True
        return False, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        raw_path: bytes = scope.get("raw_path") or path.encode()
        if len(scope.get("query_string", b"")) > MAX_QUERY_BYTES or len(raw_path) > MAX_PATH_BYTES:
            await _json(send, 414, "request URL too long")
            return
        if "\x00" in path or "\\" in path:
            await _json(send, 400, "bad path")
            return
        set_cookie = False
        if path == "/login":
            await self._login(scope, receive, send)
            return
        if self.token is not None and path not in PUBLIC_PATHS:
            ok, via_query = self._credentials(scope)
            if not ok:
                challenge = [(b"www-authenticate", b'Bearer realm="gym cameras"')]
                if _is_page(path) and scope.get("method") in ("GET", "HEAD"):
                    await _respond(send, 401, login_page(path), b"text/html; charset=utf-8", challenge)
                else:
                    await _json(send, 401, "missing or wrong token", challenge)
                return
            set_cookie = via_query

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                if set_cookie:
                    headers.append((b"set-cookie", cookie_header(self.token or "")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), max_num_fields=8)
        if self.token is None:
            await _respond(send, 303, b"", b"text/plain", [(b"location", b"/")])
            return
        if method == "GET":
            page = login_page(query.get("next", ["/"])[0])
            await _respond(send, 200, page, b"text/html; charset=utf-8")
            return
        if method != "POST":
            await _json(send, 405, "method not allowed", [(b"allow", b"GET, POST")])
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > MAX_LOGIN_BODY:
                await _json(send, 413, "login form too large")
                return
            if not message.get("more_body", False):
                break
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
        candidate = form.get("token", [""])[0]
        target = safe_next(form.get("next", ["/"])[0])
        if not token_matches(candidate, self.token):
            await anyio.sleep(0.25)  # slows guessing a little; a real token is 32 random characters
            await _respond(send, 401, login_page(target, "Wrong token."), b"text/html; charset=utf-8")
            return
        await _respond(send, 303, b"", b"text/plain",
                       [(b"location", quote(target, safe="/?=&%").encode()), (b"set-cookie", cookie_header(self.token))])
