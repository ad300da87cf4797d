"""Modbus TCP → Kafka bridge (pymodbus) with setpoint writes to holding registers and coils.

Every device (a Modbus TCP host: a PLC, or a gateway serving many unit ids 0–255) is polled in
its own loop every ``poll_interval_ms``: adjacent registers of a unit are batched into one request
(:func:`operators.devices.modbus_registers.plan_reads`), decoded and emitted as one envelope per twin stamped with
the poll time (Modbus carries no source timestamp). Holding and input registers, coils and
discrete inputs; 16/32/64-bit integers and floats, strings, bit fields, word and byte order.

Errors stay with what they concern: an exception response, a timeout or a short reply (fewer
registers than asked: the values it covers are used) is logged once per item with device, unit,
items and reason, counted in the device's health, and retried next cycle; the other requests
and devices go on. A value outside the item's ``min``/``max`` is stored with quality bad and
status ``BadOutOfRange`` (and logged once, naming word/byte order). A gateway's exception 0x0A
(path unavailable) or 0x0B (target device failed to respond) is also emitted: the request's items
without a value, with status ``BadGatewayPathUnavailable`` / ``BadGatewayTargetNoResponse``, which
take the twin offline (docs/reconciliation.md, "Connectivity"). A lost connection is re-opened with
exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from connectors.bridges.base import Bridge, Device
from connectors.bridges.mapping.schema import ModbusAsset, ModbusConnection
from operators.devices.modbus_registers import (
    BIT_KINDS,
    EncodeError,
    ReadRequest,
    RegisterField,
    decode_response,
    encode,
    field_of,
    plan_reads,
    plausible,
)
from operators.records.commands import Refused
from operators.twin.connectivity import MODBUS_GATEWAY_STATUS

log = logging.getLogger(__name__)

# Exception codes of a write that no retry changes: illegal function, data address, data value.
REFUSING_EXCEPTIONS = frozenset({1, 2, 3})

READ_FUNCTION = {  # pymodbus client method per register kind
    "holding": "read_holding_registers",
    "input": "read_input_registers",
    "coil": "read_coils",
    "discrete": "read_discrete_inputs",
}


def _item(f: RegisterField) -> str:
    twin, name = f.key  # type: ignore[misc]
    return f"{twin}.{name}"


class _Poller:
    """One device's client, read plan and lock (writes and reads never interleave on the socket)."""

    def __init__(self, device: Device) -> None:
        conn: ModbusConnection = device.conn
        self.device = device
        self.fields: dict[tuple[str, str], RegisterField] = {}
        for a in device.assets:
            assert isinstance(a, ModbusAsset)
            for name, p in a.params.items():
                self.fields[(a.twin_id, name)] = field_of(a.twin_id, name, a.unit_id, p)
        self.plan = plan_reads(self.fields.values(), conn.max_registers_per_request)
        self.client: AsyncModbusTcpClient | None = None
        self.lock = asyncio.Lock()
        self.implausible_warned: set[str] = set()


class ModbusBridge(Bridge):
    protocol = "modbus"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pollers = {name: _Poller(d) for name, d in self.devices.items()}
        self.polls = 0
        self.requests = 0
        self.registers = 0
        self.read_errors = 0
        self.implausible = 0

    @staticmethod
    def address_of(conn: Any) -> str:
        return f"{conn.host}:{conn.port}"

    # ------------------------------------------------------------------ reading
    async def _read(self, poller: _Poller, client: AsyncModbusTcpClient, req: ReadRequest) -> list | str | None:
        """The registers (or bits) of one request; None after a per-request error (logged, counted); the
        status name of a gateway exception 0x0A/0x0B (the device behind the gateway cannot be reached)."""
        h = poller.device.health
        read = getattr(client, READ_FUNCTION[req.kind])
        try:
            async with poller.lock:
                rr = await read(req.address, count=req.count, device_id=req.unit_id)
        except ConnectionException:
            raise
        except ModbusException as exc:
            if not client.connected:
                raise ConnectionError(f"connection lost: {exc}") from exc
            self._request_failed(poller, req, f"{type(exc).__name__}: {exc}")
            return None
        self.requests += 1
        if rr.isError():
            self._request_failed(poller, req, str(rr))
            return MODBUS_GATEWAY_STATUS.get(getattr(rr, "exception_code", None))  # type: ignore[arg-type]
        data = rr.bits[: req.count] if req.kind in BIT_KINDS else rr.registers
        self.registers += len(data)
        if not h.failing:
            return data
        for f in req.fields:
            if h.item_ok(_item(f)):
                log.info("Modbus %s unit %d: %s reads again", poller.device.name, req.unit_id, _item(f))
        return data

    def _request_failed(self, poller: _Poller, req: ReadRequest, reason: str) -> None:
        self.read_errors += 1
        where = f"unit {req.unit_id} {req.kind} {req.address}..{req.address + req.count - 1}"
        new = [_item(f) for f in req.fields if poller.device.health.item_error(_item(f), reason)]
        if new:
            log.warning("Modbus %s %s: %s (items %s)", poller.device.name, where, reason, ", ".join(new))

    async def _poll_once(self, poller: _Poller, client: AsyncModbusTcpClient) -> None:
        ts = datetime.now(UTC)
        dev = poller.device
        per_twin: dict[str, dict[str, Any]] = {}
        bad: dict[str, dict[str, str]] = {}
        text: dict[str, dict[str, str]] = {}
        n = 0
        for req in poller.plan:
            data = await self._read(poller, client, req)
            if data is None:
                continue
            if isinstance(data, str):  # the gateway cannot reach the device: its items without value, with why
                for f in req.fields:
                    twin, name = f.key  # type: ignore[misc]
                    per_twin.setdefault(twin, {})[name] = None
                    bad.setdefault(twin, {})[name] = data
                continue
            try:
                values, missing = decode_response(req, data)
            except Exception as exc:  # a decode bug must not cost the other requests
                self._request_failed(poller, req, f"cannot decode: {type(exc).__name__}: {exc}")
                continue
            for f in missing:
                if dev.health.item_error(_item(f), "short response"):
                    log.warning(
                        "Modbus %s unit %d: %s at %s %d..%d not in the reply: the device answered %d of %d "
                        "registers (is the address past its map?)",
                        dev.name, req.unit_id, _item(f), f.kind, f.address, f.address + f.width - 1,
                        len(data), req.count,
                    )  # fmt: skip
            for f, value in values:
                twin, name = f.key  # type: ignore[misc]
                if isinstance(value, str):
                    text.setdefault(twin, {})[name] = value
                    n += 1
                    continue
                if not plausible(f, value):
                    self._implausible(poller, f, value)
                    bad.setdefault(twin, {})[name] = "BadOutOfRange"
                per_twin.setdefault(twin, {})[name] = value
                n += 1
        for twin in per_twin.keys() | text.keys():
            self.emit(twin, ts, per_twin.get(twin, {}), "good", bad.get(twin), text.get(twin))
        if n:
            dev.health.got(n)
        self.polls += 1

    def _implausible(self, poller: _Poller, f: RegisterField, value: Any) -> None:
        self.implausible += 1
        item = _item(f)
        poller.device.health.error(f"{item}: implausible {value!r}")
        if item not in poller.implausible_warned:
            poller.implausible_warned.add(item)
            hint = (
                f" — check word_order ({f.word_order}) and byte_order ({f.byte_order})" if f.width > 1 else ""
            ) + f", scale {f.scale} and offset {f.offset}"
            log.warning(
                "Modbus %s unit %d: %s decoded to %r, outside min %s / max %s; stored with quality bad "
                "(BadOutOfRange)%s",
                poller.device.name, f.unit_id, item, value, f.min, f.max, hint,
            )  # fmt: skip

    async def serve(self, device: Device, stop: asyncio.Event) -> None:
        conn: ModbusConnection = device.conn
        poller = self.pollers[device.name]
        interval = conn.poll_interval_ms / 1000
        client = AsyncModbusTcpClient(conn.host, port=conn.port, timeout=conn.timeout_s, retries=0)
        try:
            if not await client.connect():
                raise ConnectionError(f"cannot connect to {conn.host}:{conn.port}")
            poller.client = client
            self.device_up(device)
            log.info("Modbus %s: polling %d requests on %s:%d", device.name, len(poller.plan), conn.host, conn.port)
            next_at = time.monotonic()
            while not stop.is_set():
                await self._poll_once(poller, client)
                if not client.connected:
                    raise ConnectionError("connection lost")
                next_at += interval
                delay = next_at - time.monotonic()
                if delay < 0:  # overrun: skip missed cycles instead of bursting
                    next_at = time.monotonic()
                    delay = 0
                await self.sleep_or_stop(stop, delay)
        finally:
            poller.client = None
            client.close()

    # ------------------------------------------------------------------ writing
    async def write(self, twin_id: str, parameter: str, value: float | bool, command_id: str = "") -> None:
        device = self.device_of_twin[twin_id]
        poller = self.pollers[device.name]
        f = poller.fields[(twin_id, parameter)]
        if f.kind in ("input", "discrete"):
            raise Refused(
                f"{parameter} is {'an input register' if f.kind == 'input' else 'a discrete input'} (read-only)"
            )
        try:
            regs = encode(f, value)
        except EncodeError as exc:
            raise Refused(
                f"{twin_id}.{parameter} ({f.kind} register {f.address}, {f.type}) cannot take {value}: {exc}"
            ) from None
        client = poller.client
        if client is None:
            raise ConnectionError(f"not connected to {self.address_of(device.conn)} ({device.name})")
        async with poller.lock:
            if f.kind == "coil":
                rr = await client.write_coil(f.address, bool(regs[0]), device_id=f.unit_id)
            elif f.write_function == 6:
                rr = await client.write_register(f.address, regs[0], device_id=f.unit_id)
            else:
                rr = await client.write_registers(f.address, regs, device_id=f.unit_id)
        if rr.isError():
            what = f"write of {value} to {twin_id}.{parameter} (unit {f.unit_id} {f.kind} {f.address}, {f.type})"
            if getattr(rr, "exception_code", None) in REFUSING_EXCEPTIONS:
                raise Refused(f"{what}: the device refuses it: {rr}")
            raise ModbusException(f"{what} failed: {rr}")
