"""Check a mapping's Modbus parameters on the live device (``twinflow mapping check --connect``).

Each parameter's registers are read on their own, so a refused read (an exception response such as
IllegalDataAddress) or a short reply names that parameter, and decoded as the bridge decodes them
(:mod:`operators.devices.modbus_registers`): a value outside the parameter's ``min``/``max`` is a
problem that names the word and byte order to try. Setpoints are not written: a test write would
move the machine.
"""

from __future__ import annotations

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from connectors.bridges.check import DeviceCheck
from connectors.bridges.mapping.schema import ModbusAsset, ModbusConnection
from connectors.modbus.bridge import READ_FUNCTION
from operators.devices.modbus_registers import (
    BIT_KINDS,
    RegisterField,
    decode_response,
    field_of,
    plan_reads,
    plausible,
)

ILLEGAL_DATA_ADDRESS = 2  # the Modbus exception code of a read outside the device's register map


def _where(f: RegisterField) -> str:
    span = f"{f.address}..{f.address + f.width - 1}" if f.width > 1 else str(f.address)
    return f"unit {f.unit_id} {f.kind} {span}"


def _order_hint(f: RegisterField) -> str:
    if f.width < 2:
        return f"check scale {f.scale} and offset {f.offset}"
    return f"try word_order and byte_order (now {f.word_order} and {f.byte_order}; a manual's CDAB, BADC, DCBA)"


async def check_registers(conn: ModbusConnection, assets: list[ModbusAsset], timeout: float) -> DeviceCheck:
    """Read and decode every parameter of ``assets`` on the device at ``conn``; raises ConnectionError
    when the device does not accept a connection within ``timeout`` seconds."""
    fields = [field_of(a.twin_id, name, a.unit_id, p) for a in assets for name, p in a.params.items()]
    out = DeviceCheck(checked=len(fields))
    out.setpoints = sum(p.writable for a in assets for p in a.params.values())
    client = AsyncModbusTcpClient(conn.host, port=conn.port, timeout=timeout, retries=0)
    try:
        if not await client.connect():
            raise ConnectionError(f"cannot connect to {conn.host}:{conn.port} within {timeout:g} s")
        for f in fields:
            twin, name = f.key  # type: ignore[misc]
            where = _where(f)
            [req] = plan_reads([f], conn.max_registers_per_request)
            try:
                rr = await getattr(client, READ_FUNCTION[req.kind])(req.address, count=req.count, device_id=req.unit_id)
            except ModbusException as exc:
                if not client.connected:
                    raise ConnectionError(f"{conn.host}:{conn.port} closed the connection: {exc}") from exc
                out.problem(twin, name, where, f"no answer: {exc}")
                continue
            if rr.isError():
                hint = ""
                if getattr(rr, "exception_code", None) == ILLEGAL_DATA_ADDRESS:
                    hint = " (not in the device's map: addresses are 0-based, a manual's 40001 is holding 0)"
                out.problem(twin, name, where, f"the device refused the read: {rr}{hint}")
                continue
            data = rr.bits[: req.count] if req.kind in BIT_KINDS else rr.registers
            values, missing = decode_response(req, data)
            if missing:
                out.problem(
                    twin, name, where, f"the device answered {len(data)} of {req.count} registers (past its map?)"
                )
                continue
            for field, value in values:
                if not plausible(field, value):
                    shown = f"{value:.6g}" if isinstance(value, float) else repr(value)
                    bounds = " / ".join(f"{k} {v:g}" for k, v in (("min", f.min), ("max", f.max)) if v is not None)
                    why = f"outside {bounds}" if bounds else "not a finite number"
                    out.problem(twin, name, where, f"reads {shown}, {why}: {_order_hint(f)}")
                elif f.min is None and f.max is None:
                    out.unjudged.setdefault(twin, {})[name] = value
    finally:
        client.close()
    if out.setpoints:
        out.remarks.append(f"{out.setpoints} setpoints read, not written (a test write would move the machine)")
    return out
