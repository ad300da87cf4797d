"""Request size and rate limits as plain ASGI middleware (answers are problem documents).

* **size**: a declared ``Content-Length`` above ``max_body_bytes`` is refused before the body is
  read (413); a body that turns out larger while streaming is cut off with 413 too.
* **rate**: a token bucket per client (the bearer token, else the peer address): ``rate_per_s``
  refill, ``rate_burst`` deep; beyond it 429 with ``Retry-After``. Server-sent event streams count
  once, when opened.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from typing import Any

import orjson
from fastapi import HTTPException

from twinflow.api.problems import MEDIA_TYPE, problem_body

Scope = dict[str, Any]


async def _send_problem(send, status: int, slug: str, detail: str, path: str, headers=(), **extra) -> None:
    body = orjson.dumps(problem_body(status, slug, detail, path, **extra))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """A streamed body beyond the limit: an HTTP exception, so that FastAPI's body parsing passes it on
    (413 problem) instead of turning it into a 400."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the body may be at most {max_bytes} bytes")


class BodyLimit:
    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        has_body = False
        for name, value in scope.get("headers", ()):
            if name == b"transfer-encoding":
                has_body = True
            if name == b"content-length":
                has_body = True
                try:
                    declared = int(value)
                except ValueError:
                    return await _send_problem(send, 400, "bad-request", "Content-Length is not a number", path)
                if declared > self.max_bytes:
                    return await _send_problem(
                        send, 413, "too-large", f"the body may be at most {self.max_bytes} bytes", path
                    )
        if not has_body:  # nothing to count (GET): no wrapping on the hot path
            return await self.app(scope, receive, send)
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return msg

        async def tracking_send(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_problem(send, 413, "too-large", f"the body may be at most {self.max_bytes} bytes", path)


class RateLimit:
    """Token buckets per client, the least recently used forgotten beyond ``max_clients``."""

    def __init__(self, app, rate_per_s: float, burst: int, max_clients: int = 100_000) -> None:
        self.app, self.rate, self.burst, self.max_clients = app, rate_per_s, float(burst), max_clients
        self.buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()  # client → (tokens, at)

    def _client(self, scope: Scope) -> bytes:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                return hashlib.blake2b(value, digest_size=12).digest()
        client = scope.get("client") or ("?", 0)
        return str(client[0]).encode()

    def take(self, client: bytes, now: float) -> float:
        """Take one token; 0 when allowed, else the seconds until one is available."""
        tokens, at = self.buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self.buckets[client] = (tokens, now)
        if len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)
        return wait

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http" or self.rate <= 0:
            return await self.app(scope, receive, send)
        wait = self.take(self._client(scope), time.monotonic())
        if wait > 0:
            retry = max(1, math.ceil(wait))
            return await _send_problem(
                send,
                429,
                "rate-limited",
                f"too many requests: at most {self.rate:g}/s (burst {self.burst:g}) per client",
                scope.get("path", ""),
                headers=[(b"retry-after", str(retry).encode())],
                retry_after=retry,
            )
        return await self.app(scope, receive, send)
