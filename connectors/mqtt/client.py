"""One place that builds paho-mqtt clients: persistent session, credentials, TLS.

:class:`BufferedClient` is paho's ``Client`` with three throughput changes that keep its behaviour
(QoS, sessions, TLS, reconnects, callbacks are paho's own code):

* **Reads**: paho reads each packet with ``recv(1)`` for the command byte, ``recv(1)`` per
  remaining-length byte and ``recv(n)`` for the body, and ``loop_read`` handles one packet per
  ``select()`` at QoS 0. Here ``_sock_recv`` takes one large ``recv`` into a user-space buffer
  and serves paho's small reads from it, and ``loop_read`` goes on while the buffer holds bytes,
  so a burst of messages costs one syscall per 64 KiB instead of 3+ per message. A packet that
  is wholly in the buffer is framed at once (fixed header, remaining length) and handed to
  paho's ``_packet_handle``; a partial or malformed one goes through paho's byte-wise reader.
  With TLS the large read returns up to one TLS record, as before; ``SSLWantRead``/
  ``SSLWantWrite`` keep paho's handling. The buffer belongs to one socket: after a reconnect
  it starts empty.
* **Dispatch**: paho matches every message against the topic filters of ``message_callback_add``;
  until one is added, ``_handle_on_message`` calls ``on_message`` directly (same locks and
  exception handling as paho).
* **Writes**: every ``publish()`` from another thread writes one byte to paho's wake-up socket
  pair (a syscall, and a GIL hand-off to the network thread). Inside ``with client.batch():`` the
  wake-ups are held and sent once at the end, so a publisher of many messages per tick (the
  simulator) wakes the network thread once per batch.

All of it relies on paho internals (``_sock_recv``, ``_sock``, ``_sockpairW``, ``loop_read``,
``_packet_read``/``_in_packet``/``_packet_handle``, ``_handle_on_message``, the callback
mutexes); the paho range is pinned in ``pyproject.toml`` and ``tests/unit/test_mqtt_client.py``
fails if they change.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import time_func
from paho.mqtt.exception import MalformedPacket

READ_CHUNK = 64 * 1024

log = logging.getLogger(__name__)


def idle_packet_state() -> dict:
    """paho's ``_in_packet`` between packets (what paho itself resets it to)."""
    return {
        "command": 0,
        "have_remaining": 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": 0,
        "packet": bytearray(b""),
        "to_process": 0,
        "pos": 0,
    }


class _HeldWakeups:
    """Stands in for paho's wake-up socket during :meth:`BufferedClient.batch`: records, sends nothing."""

    def __init__(self, real) -> None:
        self.real = real
        self.wanted = False

    def send(self, data: bytes) -> int:
        self.wanted = True
        return len(data)

    def close(self) -> None:
        self.real.close()


class BufferedClient(mqtt.Client):
    """paho ``Client`` with buffered socket reads and batched publish wake-ups (see the module doc)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._rsock: object | None = None
        self._batch_lock = threading.Lock()
        self._filtered_callbacks = False  # set for good by message_callback_add

    # ------------------------------------------------------------------ reads
    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rsock is not self._sock:  # new connection (or closed): never serve old bytes
            self._rbuf, self._rpos, self._rsock = b"", 0, self._sock
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(max(bufsize, READ_CHUNK))
            if len(data) <= bufsize:
                return data
            self._rbuf, self._rpos = data, 0
        end = self._rpos + bufsize
        out = self._rbuf[self._rpos : end]
        self._rpos = end
        return out

    def _packet_read(self) -> mqtt.MQTTErrorCode:
        """Frame a packet that is wholly in the buffer at once; anything else is paho's byte-wise read."""
        buf, pos = self._rbuf, self._rpos
        n = len(buf)
        if self._in_packet["command"] != 0 or self._rsock is not self._sock or n - pos < 2:
            return super()._packet_read()
        length, mult, i = 0, 1, pos + 1
        while True:  # remaining length: 1-4 bytes, 7 bits each (MQTT 3.1.1 §2.2.3)
            if i >= n or i - pos > 4:  # incomplete or malformed: paho reads and judges it
                return super()._packet_read()
            byte = buf[i]
            i += 1
            length += (byte & 127) * mult
            mult *= 128
            if not byte & 128:
                break
        end = i + length
        if end > n:
            return super()._packet_read()
        self._rpos = end
        self._in_packet = {
            "command": buf[pos],
            "have_remaining": 1,
            "remaining_count": list(buf[pos + 1 : i]),
            "remaining_mult": mult,
            "remaining_length": length,
            "packet": bytearray(buf[i:end]),
            "to_process": 0,
            "pos": 0,
        }
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = mqtt.MQTT_ERR_PROTOCOL
        self._in_packet = idle_packet_state()
        with self._msgtime_mutex:
            self._last_bytes_received = time_func()
        return rc

    def buffered(self) -> int:
        """Bytes received from the socket that paho has not consumed yet."""
        if self._rsock is not self._sock:
            return 0
        return max(len(self._rbuf) - self._rpos, 0)

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """paho's ``loop_read``, repeated while buffered bytes remain (``select`` cannot see them)."""
        rc = super().loop_read(max_packets)
        while rc == mqtt.MQTT_ERR_SUCCESS and self._sock is not None and self.buffered():
            before = self.buffered()
            rc = super().loop_read(max_packets)
            if self.buffered() == before:  # defensive: no progress, let select() decide
                break
        return rc

    # ------------------------------------------------------------------ dispatch
    def message_callback_add(self, sub: str, callback) -> None:
        super().message_callback_add(sub, callback)
        self._filtered_callbacks = True

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        """paho matches every message against topic-filtered callbacks; with none registered, call on_message."""
        if self._filtered_callbacks:
            super()._handle_on_message(message)
            return
        with self._callback_mutex:
            on_message = self.on_message
        if on_message:
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, message)
                except Exception as err:
                    self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise

    # ------------------------------------------------------------------ writes
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Hold the network thread's wake-ups while publishing many messages; wake it once at the end."""
        with self._batch_lock:
            real = self._sockpairW
            if real is None or isinstance(real, _HeldWakeups):
                yield
                return
            held = _HeldWakeups(real)
            self._sockpairW = held  # type: ignore[assignment]
            try:
                yield
            finally:
                if self._sockpairW is held:  # not replaced by a reconnect meanwhile
                    self._sockpairW = real
                if held.wanted and self._sockpairW is not None:
                    with contextlib.suppress(BlockingIOError, OSError):
                        self._sockpairW.send(b"0")


def subscription_ready(topics: list[str], ready: threading.Event) -> Callable[..., None]:
    """An ``on_subscribe`` callback for a client that subscribes to ``topics`` in one call on each
    connect: sets ``ready`` once the broker acknowledged it (from then on, messages published to
    those topics reach the client; before, the broker may drop them) and logs the topics it refused."""

    def on_subscribe(client, userdata, mid, reason_codes, properties) -> None:
        refused = [t for t, rc in zip(topics, reason_codes, strict=False) if rc.is_failure]
        if refused:
            log.error(
                "MQTT broker refused the subscription to %d topic(s), e.g. %s: check the broker's ACL for this user",
                len(refused),
                ", ".join(refused[:3]),
            )
        log.info("MQTT: subscribed to %d topic(s), e.g. %s", len(topics) - len(refused), ", ".join(topics[:3]))
        ready.set()

    return on_subscribe


def _connect_failed(client: mqtt.Client, userdata: object) -> None:
    """A connection attempt that got no CONNACK (refused, unreachable, TLS): said at every retry (1 s,
    then up to every 30 s), not a bridge that silently receives nothing."""
    log.warning(
        "MQTT broker %s:%s cannot be reached; retrying (check that it runs and mqtt.host, mqtt.port)",
        client.host,
        client.port,
    )


def login_of(ms: Any) -> dict[str, Any]:
    """The ``[mqtt]`` settings' login and TLS (``MqttSettings``) as :func:`make_client`'s keyword arguments."""
    return {
        "username": ms.username,
        "password": ms.password.get_secret_value() if ms.password else None,
        "tls": ms.tls or ms.ca_file is not None,
        "ca_file": ms.ca_file,
        "certfile": ms.cert_file,
        "keyfile": ms.key_file,
    }


def make_client(
    client_id: str,
    *,
    clean_session: bool = False,
    username: str | None = None,
    password: str | None = None,
    tls: bool = False,
    ca_file: Path | None = None,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    tls_insecure: bool = False,
) -> BufferedClient:
    """A paho client (MQTT 3.1.1); ``clean_session=False`` keeps QoS 1/2 messages while away."""
    client = BufferedClient(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
    )
    if username:
        client.username_pw_set(username, password)
    if tls:
        client.tls_set(
            ca_certs=str(ca_file) if ca_file else None,
            certfile=str(certfile) if certfile else None,
            keyfile=str(keyfile) if keyfile else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(tls_insecure)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.on_connect_fail = _connect_failed
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    return client
