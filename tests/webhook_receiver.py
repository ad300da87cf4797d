"""A real HTTP receiver on 127.0.0.1 for webhook tests (http.server in a thread)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Collects POSTs; answers ``fail_first`` requests with ``fail_status`` first (with a ``Location``
    header when ``location`` is set: a redirect; with ``Retry-After: <retry_after>`` when that is set).
    A GET is answered 200 and counted in ``gets``; ``attempted_at``: the monotonic time of each POST answered.
    ``refuse``: a POST whose body contains one of these texts is answered ``fail_status`` too.

    ``delay_s``: a POST is recorded when it arrives and answered that much later (a slow receiver).
    ``hanging``: while true, a POST is read and never answered (a black hole), nor recorded."""

    fail_first: int = 0
    fail_status: int = 503
    location: str | None = None
    retry_after: str | None = None
    refuse: set[str] = field(default_factory=set)
    delay_s: float = 0.0
    hanging: bool = False
    requests: list[Received] = field(default_factory=list)
    attempts: int = 0
    attempted_at: list[float] = field(default_factory=list)
    gets: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hooks/alerts"

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if receiver.hanging:  # held until the hanging ends (the client gave up long before)
                    deadline = time.monotonic() + 60
                    while receiver.hanging and time.monotonic() < deadline:
                        time.sleep(0.05)
                    return
                receiver.attempts += 1
                receiver.attempted_at.append(time.monotonic())
                if receiver.attempts <= receiver.fail_first or any(t.encode() in body for t in list(receiver.refuse)):
                    self.send_response(receiver.fail_status)
                    if receiver.location:
                        self.send_header("Location", receiver.location)
                    if receiver.retry_after is not None:
                        self.send_header("Retry-After", receiver.retry_after)
                    self.end_headers()
                    return
                receiver.requests.append(Received(dict(self.headers.items()), body))
                time.sleep(receiver.delay_s)
                self.send_response(204)
                self.end_headers()

            def do_GET(self) -> None:
                receiver.gets += 1
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def keys(self) -> list[str]:
        """The ``Idempotency-Key`` of each POST taken, in arrival order."""
        return [r.headers["Idempotency-Key"] for r in self.requests]

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
