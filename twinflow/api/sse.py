"""One server-sent event stream as a raw ASGI response (docs/api.md, "Server-sent events").

Each turn of the loop writes everything the subscriber's outbox holds as one chunk (the hub queues
the same shared bytes for every subscriber that wants them), a keep-alive comment after
``keepalive_s`` of silence. A client that falls behind by more than the outbox's bound
(``api.sse_client_buffer_bytes``) gets an ``overflow`` event (no id) and the stream ends: it
reconnects with ``Last-Event-ID`` and gets what it missed from the hub's buffer or from Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from connectors.kafka.event_hub import EventHub, Subscriber

KEEPALIVE = b": keepalive\n\n"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def overflow_frame(limit_bytes: int) -> bytes:
    """The event that ends a stream whose client fell too far behind."""
    data = {
        "reason": "too-slow",
        "detail": f"more than {limit_bytes} bytes of events waited for this client; the queued ones were dropped",
        "resume": "reconnect with Last-Event-ID to get them",
    }
    return b"event: overflow\ndata: " + orjson.dumps(data) + b"\n\n"


class EventStreamResponse(Response):
    """``text/event-stream`` for one hub subscriber; ``backlog`` yields the frames it missed (resume)."""

    def __init__(
        self, hub: EventHub, sub: Subscriber, backlog: Callable[[], Awaitable[list[bytes]]], keepalive_s: float
    ) -> None:
        self.hub, self.sub, self.backlog, self.keepalive_s = hub, sub, backlog, keepalive_s
        self.status_code = 200
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sub = self.sub
        watcher = asyncio.create_task(self._until_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
            missed = await self.backlog()
            if missed:
                await send({"type": "http.response.body", "body": b"".join(missed), "more_body": True})
            while (chunks := await sub.take(self.keepalive_s)) is not None:
                body = b"".join(chunks) if chunks else KEEPALIVE
                await send({"type": "http.response.body", "body": body, "more_body": True})
            end = overflow_frame(sub.limit_bytes) if sub.overflowed else b""
            await send({"type": "http.response.body", "body": end, "more_body": False})
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self.hub.unsubscribe(sub)

    async def _until_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.sub.close()
