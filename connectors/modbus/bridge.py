"""Modbus TCP → Kafka bridge (pymodbus) with setpoint writes to holding registers.

Every ``poll_interval_ms`` the bridge reads the mapping's registers, adjacent ones batched into
one request (see :func:`operators.registers.plan_reads`), decodes them and emits one envelope
per twin stamped with the poll time (Modbus carries no source timestamp). A failed read
leaves that twin's values out of the cycle and is counted; a lost connection is re-opened
with exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from connectors.bridge import Bridge
from operators.commands import Refused
from operators.registers import EncodeError, RegisterField, decode_response, encode, plan_reads
from twinflow.mapping import ModbusAsset

log = logging.getLogger(__name__)


class ModbusBridge(Bridge):
    protocol = "modbus"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = self.mapping.modbus
        self.fields: dict[tuple[str, str], RegisterField] = {}
        for a in self.assets:
            assert isinstance(a, ModbusAsset)
            for name, p in a.params.items():
                self.fields[(a.twin_id, name)] = RegisterField(
                    (a.twin_id, name), a.unit_id, p.kind, p.address, p.type, p.word_order, p.scale, p.offset
                )
        self.plan = plan_reads(self.fields.values(), self.conn.max_registers_per_request)
        self.client: AsyncModbusTcpClient | None = None
        self.polls = 0
        self.requests = 0
        self.registers = 0
        self.read_errors = 0
        self._lock = asyncio.Lock()

    async def _poll_once(self, client: AsyncModbusTcpClient) -> None:
        ts = datetime.now(UTC)
        per_twin: dict[str, dict[str, float]] = {}
        for req in self.plan:
            read = client.read_holding_registers if req.kind == "holding" else client.read_input_registers
            async with self._lock:
                rr = await read(req.address, count=req.count, device_id=req.unit_id)
            self.requests += 1
            if rr.isError():
                self.read_errors += 1
                log.warning(
                    "Modbus unit %d %s %d..%d: %s",
                    req.unit_id,
                    req.kind,
                    req.address,
                    req.address + req.count - 1,
                    rr,
                )
                continue
            self.registers += req.count
            for f, value in decode_response(req, rr.registers):
                twin, name = f.key  # type: ignore[misc]
                per_twin.setdefault(twin, {})[name] = value
        for twin, readings in per_twin.items():
            self.emit(twin, ts, readings)
        self.polls += 1

    async def run(self, stop: asyncio.Event) -> None:
        delays = self.delays()
        interval = self.conn.poll_interval_ms / 1000
        while not stop.is_set():
            client = AsyncModbusTcpClient(self.conn.host, port=self.conn.port, timeout=self.conn.timeout_s, retries=0)
            try:
                if not await client.connect():
                    raise ConnectionError(f"cannot connect to {self.conn.host}:{self.conn.port}")
                self.client = client
                self.connected.set()
                log.info("Modbus: polling %d requests on %s:%d", len(self.plan), self.conn.host, self.conn.port)
                delays = self.delays()
                next_at = time.monotonic()
                while not stop.is_set():
                    await self._poll_once(client)
                    next_at += interval
                    delay = next_at - time.monotonic()
                    if delay < 0:  # overrun: skip missed cycles instead of bursting
                        next_at = time.monotonic()
                        delay = 0
                    await self.sleep_or_stop(stop, delay)
            except (ModbusException, ConnectionError, OSError) as exc:
                log.warning("Modbus %s:%d: %s", self.conn.host, self.conn.port, exc)
            finally:
                self.connected.clear()
                self.client = None
                client.close()
            if not stop.is_set():
                await self.sleep_or_stop(stop, next(delays))

    async def write(self, twin_id: str, parameter: str, value: float) -> None:
        f = self.fields[(twin_id, parameter)]
        if f.kind != "holding":
            raise Refused(f"{parameter} is an input register (read-only)")
        try:
            regs = encode(f, value)
        except EncodeError as exc:
            raise Refused(str(exc)) from None
        client = self.client
        if client is None:
            raise ConnectionError(f"not connected to {self.conn.host}:{self.conn.port}")
        async with self._lock:
            rr = await client.write_registers(f.address, regs, device_id=f.unit_id)
        if rr.isError():
            raise ModbusException(f"write to unit {f.unit_id} register {f.address} failed: {rr}")
