"""The HTTP server of ``twinflow serve``: uvicorn, stopped as every long-running command is.

SIGTERM/SIGINT end the live event streams first, then uvicorn's graceful shutdown; the process exits 0.
A stop that came before uvicorn took the signals over (during the imports or the app's set-up,
recorded by :mod:`connectors.stopping`) is honoured as soon as it has: the server starts and stops.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from connectors.stopping import STOP


class Server(uvicorn.Server):
    """One server process; ``app``: the application whose event hub to close on a stop (if built here)."""

    def __init__(self, config: uvicorn.Config, app: FastAPI | None = None) -> None:
        super().__init__(config)
        self.app = app

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            if STOP.requested.is_set():
                self.handle_exit(STOP.first or signal.SIGTERM, None)
            yield

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not STOP.requested.is_set():
            STOP.signal(sig)  # also ends a start-up that waits for PostgreSQL or Kafka (create_app's stop)
        if self.app is not None:
            self.app.state.hub.close_all()
        super().handle_exit(sig, frame)
        self._captured_signals.clear()  # a clean stop exits 0 (uvicorn would re-raise the signal)


def serve_workers(config: uvicorn.Config) -> None:
    """``config.workers`` server processes under uvicorn's supervisor (each builds its own app)."""
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    if STOP.requested.is_set():  # before the supervisor took the signals over
        supervisor.signal_queue.append(signal.SIGTERM)
    supervisor.run()
