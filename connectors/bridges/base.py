"""What every mapped protocol bridge shares: its devices, event loop thread, publisher, command path, seq.

A bridge serves every device of its protocol in the mapping file (``[devices.NAME]`` tables and
the protocol's own section) concurrently, each in its own loop: :meth:`Bridge.serve` connects to
one device and reads it until the link is lost; any error is logged with the device and counted,
and the device is retried with exponential backoff, while the other devices go on. Values go out
through :meth:`Bridge.emit`; values the bridge cannot use go to the dead-letter topic with
:meth:`Bridge.reject` (the device's original bytes or a description of the value, and the field).
Commands for the bridge's twins arrive through a :class:`CommandListener` and are applied with
:meth:`Bridge.write`.

``run_forever`` logs every device's health every 10 s (and serves ``/metrics`` and ``/health``
with ``metrics_port``); it returns exit code 1 when the device loop, the publisher or the
command thread died, so a supervisor restarts the process instead of it idling silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.bridges.health import DeviceHealth, HealthServer
from connectors.bridges.loop_thread import LoopThread
from connectors.bridges.mapping.loading import require
from connectors.bridges.mapping.schema import Mapping
from connectors.config.contract import ConnectorSettings
from connectors.kafka.commands import CommandListener
from connectors.kafka.publisher import Publisher
from connectors.retry import backoff_delays
from connectors.stopping import STOP_FLUSH_S, stop_on_signals
from operators.devices.readings import SeqCounter, envelope, iso_ts
from operators.records.commands import Command, Refused  # noqa: F401 - re-exported for bridges
from operators.telemetry.ingest import dead_letter_of

log = logging.getLogger(__name__)


@dataclass
class Device:
    """One connection of a bridge: its settings, the assets it serves and its health."""

    name: str
    conn: Any
    assets: list[Any]
    health: DeviceHealth


class Bridge(ABC):
    protocol: str

    def __init__(
        self,
        settings: ConnectorSettings,
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
        self.rejected = 0
        # Set while at least one device is connected (tests and the health report wait on it).
        self.connected = threading.Event()
        self.devices: dict[str, Device] = {
            name: Device(name, conn, assets, DeviceHealth(name, self.protocol, self.address_of(conn)))
            for name, (conn, assets) in mapping.devices_of(self.protocol).items()
        }
        self.device_of_twin: dict[str, Device] = {a.twin_id: d for d in self.devices.values() for a in d.assets}
        # Per-record constants of emit(): Kafka keys by twin, the headers (shared, never mutated).
        self._raw_topic = settings.topics.raw
        self._keys: dict[str, bytes] = {}
        self._headers = [("bridge", self.protocol.encode())]
        self._last_ts: datetime | None = None
        self._last_iso = ""
        self.runner = LoopThread(f"bridge-{self.protocol}", self.run)
        self.commands = (
            CommandListener(settings, self.protocol, self.writable(), self.apply_command, self.instance)
            if commands
            else None
        )
        self.health_server: HealthServer | None = None

    # ------------------------------------------------------------------ device side (subclasses)
    @staticmethod
    @abstractmethod
    def address_of(conn: Any) -> str:
        """Where a device is, for logs and metrics (an endpoint, host:port, a broker)."""

    @abstractmethod
    async def serve(self, device: Device, stop: asyncio.Event) -> None:
        """Connect to one device and read it until ``stop`` is set or the link is lost (return or raise;
        the caller logs, counts and retries with backoff)."""

    @abstractmethod
    async def write(self, twin_id: str, parameter: str, value: float | bool, command_id: str = "") -> None:
        """Write one setpoint to the device; raise :class:`Refused` or any error on failure."""

    def writable(self) -> Any:
        """twin_id → {parameter: writable} of the twins whose commands this bridge applies."""
        return {a.twin_id: {n: p.writable for n, p in a.params.items()} for a in self.assets}

    async def run(self, stop: asyncio.Event) -> None:
        """Serve every device concurrently until ``stop``."""
        await asyncio.gather(*(self._device_loop(d, stop) for d in self.devices.values()))

    async def _device_loop(self, device: Device, stop: asyncio.Event) -> None:
        h = device.health
        delays = self.delays()
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.serve(device, stop)
                if not stop.is_set():
                    h.error("connection lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                h.error(f"{type(exc).__name__}: {exc}")
                log.warning("%s device %s (%s): %s: %s", self.protocol, device.name, h.address, type(exc).__name__, exc)
            finally:
                h.down()
                self._set_connected()
            if stop.is_set():
                break
            if time.monotonic() - started > 30:  # it had been working: start the backoff over
                delays = self.delays()
            h.reconnects += 1
            await self.sleep_or_stop(stop, next(delays))

    def device_up(self, device: Device) -> None:
        device.health.up()
        self._set_connected()

    def _set_connected(self) -> None:
        if any(d.health.connected for d in self.devices.values()):
            self.connected.set()
        else:
            self.connected.clear()

    def delays(self):
        b = self.settings.bridge
        return backoff_delays(b.reconnect_min_s, b.reconnect_max_s)

    async def sleep_or_stop(self, stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    # ------------------------------------------------------------------ Kafka side
    def emit(
        self,
        twin_id: str,
        ts: datetime,
        readings: dict[str, Any],
        quality: str = "good",
        status: dict[str, str] | None = None,
        text: dict[str, str] | None = None,
    ) -> int:
        """Publish one envelope; returns its seq."""
        seq = self.seq.next(twin_id)
        if ts is not self._last_ts:  # many envelopes share one timestamp object: format it once
            self._last_ts, self._last_iso = ts, iso_ts(ts)
        value = envelope(twin_id, self._last_iso, seq, self.protocol, readings, quality, status, text)
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

    def reject(
        self,
        twin_id: str | None,
        payload: bytes,
        reason: str,
        detail: str,
        *,
        field: str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Send what the device sent (``payload``) to the dead-letter topic, with the reason and the
        field (``readings.running``); the values beside it go on."""
        dead = dead_letter_of(
            payload,
            twin_id.encode() if twin_id else None,
            reason,
            detail,
            max_value_bytes=self.settings.security.max_dead_letter_bytes,
            now=datetime.now(UTC),
            field=field,
            headers=[*(headers or ()), ("bridge", self.protocol.encode())],
        )
        self.publisher.put(self.settings.topics.dlq, dead.key, dead.value or b"", dead.headers())
        self.rejected += 1

    def apply_command(self, cmd: Command, timeout: float) -> None:
        """Called from the command thread: run :meth:`write` on the bridge's loop."""
        self.runner.call(self.write(cmd.twin_id, cmd.parameter, cmd.value, cmd.command_id), timeout)

    # ------------------------------------------------------------------ lifecycle
    def start(self, metrics_port: int | None = None) -> Bridge:
        if metrics_port is not None:
            self.health_server = HealthServer(
                f"{self.protocol}-{self.instance}", lambda: [d.health for d in self.devices.values()], metrics_port
            ).start()
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
        if self.health_server is not None:
            self.health_server.stop()
        log.info(
            "%s bridge stopped: %d values in %d envelopes, %d values dead-lettered",
            self.protocol,
            self.values,
            self.envelopes,
            self.rejected,
        )

    def dead_parts(self) -> list[str]:
        """The parts of the bridge that stopped although nobody asked them to."""
        dead = []
        if not self.runner.alive:
            dead.append(f"device loop ({self.runner.error!r})")
        if not self.publisher.alive:
            dead.append("Kafka publisher")
        if self.commands is not None and not self.commands.alive:
            dead.append("command listener")
        return dead

    def log_health(self) -> None:
        devices = list(self.devices.values())
        up = sum(d.health.connected for d in devices)
        level = logging.INFO if up else logging.WARNING
        log.log(
            level,
            "%s bridge %s: %d/%d devices connected, %d values, %d dead-lettered, publisher %s",
            self.protocol,
            "healthy" if up else "UNHEALTHY",
            up,
            len(devices),
            self.values,
            self.rejected,
            self.publisher.stats(),
        )
        for d in devices:
            log.log(logging.INFO if d.health.connected else logging.WARNING, "  device %s", d.health.summary())

    def run_forever(self, metrics_port: int | None = None, report_s: float = 10.0) -> int:
        """Run until SIGINT/SIGTERM (exit code 0) or until a part of the bridge dies (exit code 1); then
        deliver what is buffered (what Kafka does not take in :data:`STOP_FLUSH_S` stays in the spill file)."""
        stop = stop_on_signals()
        self.start(metrics_port)
        code = 0
        next_report = time.monotonic() + report_s
        while not stop.wait(1.0):
            dead = self.dead_parts()
            if dead:
                log.critical("%s bridge: %s stopped; exiting with code 1 (restart it)", self.protocol, ", ".join(dead))
                code = 1
                break
            if time.monotonic() >= next_report:
                next_report += report_s
                self.log_health()
        self.stop(STOP_FLUSH_S, join_timeout=1.5)  # with the flush: within STOP_WITHIN_S
        return code
