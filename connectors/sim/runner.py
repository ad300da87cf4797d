"""`twinflow simulate`: step the plant on a fixed clock and serve it over OPC-UA, Modbus TCP and MQTT.

Ticks are aligned to multiples of ``sim.tick_s`` (the OPC-UA SourceTimestamp and the MQTT ``ts``
are the tick time). The fault schedule is written once at start, as ground truth, to
``sim.ground_truth_file`` (JSON lines) and to the Kafka topic ``sim.ground_truth``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import orjson

from connectors.bridges.loop_thread import LoopThread
from connectors.bridges.mapping.schema import Mapping
from connectors.config.contract import ConnectorSettings
from connectors.extras import require
from connectors.kafka.clients import ensure_topics, make_producer, topic_specs
from connectors.sim.faults import Fault
from connectors.sim.mqtt_device import SimMqttDevice
from connectors.sim.plant import Plant
from connectors.sim.settings import SimSettings
from connectors.stopping import Stopped, stop_on_signals, wait_unless_stopped

if TYPE_CHECKING:
    from connectors.sim.modbus_server import SimModbusServer
    from connectors.sim.opcua_server import SimOpcuaServer

log = logging.getLogger(__name__)


def tick_time(t: float) -> datetime:
    """A tick's time (epoch seconds on the ``sim.tick_s`` grid) as the UTC timestamp its values carry.

    >>> tick_time(1796603343.6000001).isoformat()
    '2026-12-07T00:29:03.600000+00:00'
    """
    return datetime.fromtimestamp(round(t, 6), UTC)


class SimulatorSettings(ConnectorSettings, Protocol):
    """The connectors' sections and ``[sim]`` (the composed settings have them all)."""

    @property
    def sim(self) -> SimSettings: ...


def require_extras(mapping: Mapping, protocols: tuple[str, ...]) -> None:
    """:class:`~connectors.extras.MissingExtra` unless the libraries of the servers to run are installed."""
    for protocol in ("opcua", "modbus"):
        if protocol in protocols and mapping.of(protocol):
            require(protocol)


class Simulator:
    def __init__(
        self,
        settings: SimulatorSettings,
        mapping: Mapping,
        faults: list[Fault] | None = None,
        *,
        protocols: tuple[str, ...] = ("opcua", "mqtt", "modbus"),
        tick_s: float | None = None,
        ground_truth_kafka: bool = True,
    ) -> None:
        self.settings = settings
        self.mapping = mapping
        self.faults = faults or []
        self.tick_s = tick_s or settings.sim.tick_s
        self.plant = Plant(mapping, self.faults, seed=settings.sim.seed)
        self.lock = threading.Lock()
        wanted = [p for p in protocols if mapping.of(p)]
        # One server per OPC-UA / Modbus device of the mapping; their libraries are extras, imported
        # only when the mapping has such devices (connectors/extras.py).
        self.opcua_servers: list[SimOpcuaServer] = []
        self.modbus_servers: list[SimModbusServer] = []
        require_extras(mapping, protocols)
        if "opcua" in wanted:
            from connectors.sim.opcua_server import SimOpcuaServer

            self.opcua_servers = [
                SimOpcuaServer(mapping, conn, assets, self.plant)
                for conn, assets in mapping.devices_of("opcua").values()
            ]
        if "modbus" in wanted:
            from connectors.sim.modbus_server import SimModbusServer

            self.modbus_servers = [
                SimModbusServer(conn, assets, self.plant) for conn, assets in mapping.devices_of("modbus").values()
            ]
        self.mqtt = SimMqttDevice(mapping, self.plant) if "mqtt" in wanted else None
        if self.mqtt is not None:
            self.mqtt.lock = self.lock
        self.ground_truth_kafka = ground_truth_kafka
        self.ticks = 0
        self.values = 0
        self.late_ticks = 0
        self.started = threading.Event()
        self.runner = LoopThread("simulator", self.run)
        self.start_time: datetime | None = None

    def record_ground_truth(self, start: datetime) -> list[dict]:
        records = [f.ground_truth(start) for f in self.faults]
        path = self.settings.sim.ground_truth_file
        if records:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as fh:
                for r in records:
                    fh.write(orjson.dumps(r) + b"\n")
        if records and self.ground_truth_kafka:
            topic = self.settings.topics.ground_truth
            ensure_topics(self.settings, [s for s in topic_specs(self.settings) if s.name == topic])
            producer = make_producer(self.settings)
            for r in records:
                producer.produce(topic, key=r["twin_id"].encode(), value=orjson.dumps(r))
            left = producer.flush(15)
            if left:
                log.error("%d ground-truth records not acknowledged by Kafka (they are in %s)", left, path)
        log.info("ground truth: %d faults → %s and %s", len(records), path, self.settings.topics.ground_truth)
        return records

    async def run(self, stop: asyncio.Event) -> None:
        tick = self.tick_s
        before = tick_time(math.floor(time.time() / tick) * tick)  # the plant's values at start: this tick's
        opcua = (srv.start(before) for srv in self.opcua_servers)
        await asyncio.gather(*opcua, *(srv.start() for srv in self.modbus_servers))
        if self.mqtt:
            await asyncio.to_thread(self.mqtt.start)
        t0 = math.ceil(time.time() / tick) * tick
        self.start_time = tick_time(t0)
        await asyncio.to_thread(self.record_ground_truth, self.start_time)
        self.started.set()
        k = 0
        try:
            while not stop.is_set():
                k += 1
                target = t0 + k * tick
                delay = target - time.time()
                if delay > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                        break
                    except TimeoutError:
                        pass
                else:
                    if delay < -1.0:  # far behind (CPU starved): skip ahead rather than burst
                        self.late_ticks += 1
                        k = int((time.time() - t0) / tick)
                        target = t0 + k * tick
                    # Behind the clock the ticks follow each other without waiting: let the servers
                    # answer their clients in between (an OPC-UA Publish request, a Modbus read).
                    await asyncio.sleep(0)
                await self.tick(tick_time(target))
        finally:
            for srv in self.opcua_servers:
                await srv.stop()
            for srv in self.modbus_servers:
                await srv.stop()
            if self.mqtt:
                self.mqtt.stop()

    @property
    def opcua(self) -> SimOpcuaServer | None:
        """The first OPC-UA server (files with one OPC-UA device have just that one)."""
        return self.opcua_servers[0] if self.opcua_servers else None

    @property
    def modbus(self) -> SimModbusServer | None:
        return self.modbus_servers[0] if self.modbus_servers else None

    async def tick(self, ts: datetime) -> None:
        for srv in self.opcua_servers:
            srv.poll_writes()
        with self.lock:
            samples = self.plant.step(self.tick_s)
        now = datetime.now(UTC)
        n = 0
        for srv in self.opcua_servers:
            n += await srv.publish(samples, ts, now)
        for mb in self.modbus_servers:
            n += mb.publish(samples)
        if self.mqtt:
            n += self.mqtt.publish(samples, ts)
        self.values += n
        self.ticks += 1

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float | None = None) -> Simulator:
        # Many devices take a while: each OPC-UA server needs about a second to build its address space.
        timeout = timeout or 30.0 + 6.0 * (len(self.opcua_servers) + len(self.modbus_servers) / 10)
        self.runner.start()
        try:  # a stop while the servers start: they are stopped, and the command ends (Stopped)
            started = wait_unless_stopped(lambda s: self.started.wait(s) or None, timeout, "starting the simulator")
        except Stopped:
            self.runner.stop()
            raise
        if not started:
            self.runner.stop()
            raise RuntimeError(f"simulator did not start: {self.runner.error!r}")
        return self

    def stop(self) -> None:
        self.runner.stop()

    def run_forever(self, duration: float | None = None) -> None:
        stop = stop_on_signals()
        self.start()
        end = None if duration is None else time.monotonic() + duration
        while not stop.wait(1 if end else 10):
            if end is not None and time.monotonic() >= end:
                break
            if not self.runner.alive:
                raise RuntimeError(f"simulator stopped: {self.runner.error!r}")
            if end is None:
                log.info("simulator: %d ticks, %d values served", self.ticks, self.values)
        self.stop()
        log.info(
            "simulator stopped: %d ticks, %d values served, %d times skipped ahead (CPU starved)",
            self.ticks,
            self.values,
            self.late_ticks,
        )
