"""What every mapped protocol bridge shares: its event loop thread, publisher, command path, seq.

A bridge reads device values and calls :meth:`Bridge.emit`; the shared :class:`Publisher`
buffers and forwards to Kafka. Commands for the bridge's twins arrive through a
:class:`CommandListener` and are applied with the bridge's :meth:`Bridge.write`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any

from connectors.kafka.commands import CommandListener
from connectors.kafka.publisher import Publisher
from connectors.loop_thread import LoopThread
from connectors.stopping import STOP_FLUSH_S, stop_on_signals
from operators.commands import Command, Refused  # noqa: F401 - re-exported for bridges
from operators.readings import SeqCounter, envelope, iso_ts
from twinflow.mapping import Mapping, require
from twinflow.retry import backoff_delays
from twinflow.settings import Settings

log = logging.getLogger(__name__)


class Bridge(ABC):
    protocol: str

    def __init__(
        self,
        settings: Settings,
        mapping: Mapping,
        *,
        publisher: Publisher | None = None,
        instance: str | None = None,
        commands: bool = True,
    ) -> None:
        self.settings = settings
        self.mapping = mapping
        self.assets = require(mapping, self.protocol)
        self.instance = instance or (mapping.source.stem if mapping.source else "default")
        self.publisher = publisher or Publisher(settings, f"{self.protocol}-{self.instance}")
        self.seq = SeqCounter()
        self.values = 0
        self.envelopes = 0
        self.connected = threading.Event()
        # Per-record constants of emit(): Kafka keys by twin, the headers (shared, never mutated).
        self._raw_topic = settings.topics.raw
        self._keys: dict[str, bytes] = {}
        self._headers = [("bridge", self.protocol.encode())]
        self._last_ts: datetime | None = None
        self._last_iso = ""
        self.runner = LoopThread(f"bridge-{self.protocol}", self.run)
        writable = {a.twin_id: {n: p.writable for n, p in a.params.items()} for a in self.assets}
        self.commands = (
            CommandListener(settings, self.protocol, writable, self.apply_command, self.instance) if commands else None
        )

    # ------------------------------------------------------------------ device side (subclasses)
    @abstractmethod
    async def run(self, stop: asyncio.Event) -> None:
        """Read the devices until ``stop`` is set, reconnecting with backoff."""

    @abstractmethod
    async def write(self, twin_id: str, parameter: str, value: float) -> None:
        """Write one setpoint to the device; raise :class:`Refused` or any error on failure."""

    def delays(self):
        b = self.settings.bridge
        return backoff_delays(b.reconnect_min_s, b.reconnect_max_s)

    async def sleep_or_stop(self, stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    # ------------------------------------------------------------------ Kafka side
    def emit(self, twin_id: str, ts: datetime, readings: dict[str, Any], quality: str = "good") -> int:
        """Publish one envelope; returns its seq."""
        seq = self.seq.next(twin_id)
        if ts is not self._last_ts:  # many envelopes share one timestamp object: format it once
            self._last_ts, self._last_iso = ts, iso_ts(ts)
        value = envelope(twin_id, self._last_iso, seq, self.protocol, readings, quality)
        key = self._keys.get(twin_id)
        if key is None:
            key = self._keys[twin_id] = twin_id.encode()
        self.publisher.put(self._raw_topic, key, value, self._headers)
        self.values += len(readings)
        self.envelopes += 1
        return seq

    def emit_raw(self, twin_id: str | None, payload: bytes, headers: list[tuple[str, bytes]]) -> None:
        """Forward a payload the bridge cannot map, unchanged: the flow dead-letters it with the reason."""
        self.publisher.put(
            self.settings.topics.raw,
            twin_id.encode() if twin_id else None,
            payload,
            [*headers, ("bridge", b"raw")],
        )

    def apply_command(self, cmd: Command, timeout: float) -> None:
        """Called from the command thread: run :meth:`write` on the bridge's loop."""
        self.runner.call(self.write(cmd.twin_id, cmd.parameter, cmd.value), timeout)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Bridge:
        self.publisher.start()
        self.runner.start()
        if self.commands is not None:
            self.commands.start()
        return self

    def stop(self, flush_timeout: float = 30.0, join_timeout: float = 15.0) -> None:
        """Stop the command path and the device side (each given ``join_timeout``), then deliver
        what is buffered (up to ``flush_timeout``; the rest stays in the spill file)."""
        if self.commands is not None:
            self.commands.stop(join_timeout)
        self.runner.stop(join_timeout)
        self.publisher.close(flush_timeout)
        log.info("%s bridge stopped: %d values in %d envelopes", self.protocol, self.values, self.envelopes)

    def run_forever(self) -> None:
        """Run until SIGTERM/SIGINT; then deliver what is buffered (what Kafka does not take in
        :data:`STOP_FLUSH_S` stays in the spill file for the next run)."""
        stop = stop_on_signals()
        self.start()
        while not stop.wait(10):
            log.info("%s: %d values, publisher %s", self.protocol, self.values, self.publisher.stats())
        self.stop(STOP_FLUSH_S, join_timeout=1.5)  # with the flush: within STOP_WITHIN_S
