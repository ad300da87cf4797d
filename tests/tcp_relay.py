"""A TCP relay between clients and a server that a test can freeze: the connections stay open and
nothing passes either way, as with a server that stopped answering without closing them.

>>> import socket
>>> echo = socket.create_server(("127.0.0.1", 0))
>>> relay = Relay(echo.getsockname()[1])
>>> client = socket.create_connection(("127.0.0.1", relay.port))
>>> served, _ = echo.accept()
>>> client.sendall(b"ping"); served.recv(4)
b'ping'
>>> relay.close(); echo.close(); client.close(); served.close()
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Relay:
    """Relays each connection to ``127.0.0.1:<target_port>`` on a port of its own (``port``; a free one
    unless given)."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = (target_host, target_port)
        self._server = socket.create_server(("127.0.0.1", port))
        self.port: int = self._server.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def freeze(self) -> None:
        """Nothing more passes, either way, until :meth:`thaw`."""
        self._open.clear()

    def thaw(self) -> None:
        self._open.set()

    def close(self) -> None:
        """Stop accepting and close every relayed connection."""
        self._open.set()
        for sock in [self._server, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), name="relay-pipe", daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                self._open.wait()
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
