"""Long-lived pushed responses (MJPEG video, Server-Sent Events) that drop a client which stops reading."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from realtime.web.hub import BOUNDARY, LiveHub, Subscriber

SSE_PING_S = 15.0  # comment line sent on an idle push channel (keeps proxies open, finds dead clients)


class _DropNotice(logging.Filter):
    """uvicorn logs an error when a response ends unfinished; for a client we dropped on purpose that is expected."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


def quiet_dropped_clients() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropNotice) for f in logger.filters):
        logger.addFilter(_DropNotice())


class PushStream(Response):
    """Streams ``chunks``; a send that waits longer than ``send_timeout_s`` (client not reading) ends the response.

    ``on_close(stalled)`` runs exactly once when the stream ends for any reason (client gone, stalled, shutdown).
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        media_type: str,
        *,
        on_close: Callable[[bool], None],
        send_timeout_s: float = 5.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(content=None, status_code=200, headers=headers, media_type=media_type)
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]  # streamed: chunked
        self.chunks = chunks
        self.on_close = on_close
        self.send_timeout_s = send_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stalled = False
        completed = False
        try:
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch_disconnect)
                try:
                    with anyio.fail_after(self.send_timeout_s):
                        await send({"type": "http.response.start", "status": self.status_code,
                                    "headers": self.raw_headers})
                    async for chunk in self.chunks:
                        with anyio.fail_after(self.send_timeout_s):
                            await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    completed = True
                except TimeoutError:
                    stalled = True  # return unfinished: the server closes the connection
                group.cancel_scope.cancel()
            if completed:
                with anyio.move_on_after(self.send_timeout_s):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self.chunks.aclose()
            self.on_close(stalled)


async def mjpeg_chunks(hub: LiveHub, sub: Subscriber) -> AsyncIterator[bytes]:
    """multipart/x-mixed-replace body: the latest frame at once (if any), then each newly encoded one."""
    yield f"--{BOUNDARY}\r\n".encode()
    first = hub.latest_part(sub.camera or "", sub.size)
    if first is not None:
        yield first
    while not sub.closed:
        parts = await sub.wait(SSE_PING_S)
        if parts and not sub.closed:
            yield parts[-1]


async def event_chunks(hub: LiveHub, sub: Subscriber) -> AsyncIterator[bytes]:
    """text/event-stream body: current states at once, then changed states (at most push_hz), reps and events."""
    sent: dict[str, int] = {}
    yield b"retry: 2000\n\n"
    behind = True  # first round: send every camera's state at once
    while not sub.closed:
        queued = sub.drain() if behind else await sub.wait(SSE_PING_S)
        if sub.closed:
            break
        states, behind = hub.pending_states(sub, sent)
        messages = states + queued
        yield b"".join(messages) if messages else b": ping\n\n"
        await anyio.sleep(hub.push_interval)
