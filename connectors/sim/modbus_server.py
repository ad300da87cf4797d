"""The simulator's Modbus TCP server (pymodbus): a register image per unit, refreshed every tick.

Reads are answered from the latest image; writes to holding registers that hold a setpoint are
decoded with the mapping's type/scale/offset and change the plant's physics.
"""

from __future__ import annotations

import asyncio
import logging

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType

from connectors.bridges.mapping.schema import ModbusAsset, ModbusConnection
from connectors.sim.plant import Plant, Sample
from operators.devices.modbus_registers import BIT_KINDS, EncodeError, RegisterField, decode, encode, field_of

log = logging.getLogger(__name__)

_KIND_OF_FC = {3: "holding", 6: "holding", 16: "holding", 23: "holding", 4: "input"}


class SimModbusServer:
    """One Modbus TCP device of the mapping (its section or a ``[devices.NAME]``) and its assets.

    Registers only: coils and discrete inputs of the mapping read as 0."""

    def __init__(
        self, conn: ModbusConnection, assets: list[ModbusAsset], plant: Plant, size: int | None = None
    ) -> None:
        self.conn = conn
        self.plant = plant
        self.assets = assets
        self.fields: list[RegisterField] = [
            field_of(a.twin_id, n, a.unit_id, p)
            for a in self.assets
            for n, p in a.params.items()
            if p.kind not in BIT_KINDS and p.data_type != "string"
        ]
        top = max((f.address + f.width for f in self.fields), default=1)
        self.size = size or max(top, 1)
        units = sorted({a.unit_id for a in self.assets})
        self.images: dict[tuple[int, str], list[int]] = {
            (u, k): [0] * self.size for u in units for k in ("holding", "input")
        }
        self.writes = 0
        self.offline_units: set[int] = set()  # units of twins with a device_offline fault
        self._devices = [
            SimDevice(
                id=u,
                simdata=(
                    [SimData(0, count=1, datatype=DataType.BITS)],
                    [SimData(0, count=1, datatype=DataType.BITS)],
                    [SimData(0, count=self.size, values=0, datatype=DataType.REGISTERS)],
                    [SimData(0, count=self.size, values=0, datatype=DataType.REGISTERS)],
                ),
                action=self._action_for(u),
            )
            for u in units
        ]
        self.server: ModbusTcpServer | None = None
        self._task: asyncio.Task | None = None
        self._setpoints = [f for f in self.fields if f.kind == "holding" and plant.setpoint(*f.key) is not None]  # type: ignore[misc]
        for f in self._setpoints:  # a setpoint reads as the plant's from the first request, not 0 until a tick
            regs = encode(f, plant.setpoint(*f.key), saturate=True)  # type: ignore[misc,arg-type]
            self.images[(f.unit_id, f.kind)][f.address : f.address + f.width] = regs

    def _action_for(self, unit: int):
        async def action(fc, start, address, count, registers, set_values):
            if unit in self.offline_units:
                return ExcCodes.GATEWAY_NO_RESPONSE  # device_offline: the gateway's target does not answer
            kind = _KIND_OF_FC.get(fc)
            if kind is None:
                return None
            image = self.images[(unit, kind)]
            lo, hi = address - start, address - start + count
            if set_values is None:
                registers[lo:hi] = image[address : address + count]
                return None
            image[address : address + count] = list(set_values)
            for f in self._setpoints:
                if f.unit_id == unit and address <= f.address + f.width - 1 and f.address <= address + count - 1:
                    value = decode(f, image[f.address : f.address + f.width])
                    self.plant.set(f.key[0], f.key[1], value)  # type: ignore[index]
                    self.writes += 1
                    log.info("Modbus write unit %d %s = %s", unit, f.key, value)
            return None

        return action

    async def start(self) -> None:
        self.server = ModbusTcpServer(self._devices, address=(self.conn.host, self.conn.port))
        self._task = asyncio.create_task(self.server.serve_forever())
        for _ in range(50):
            if self.server.transport is not None:
                break
            await asyncio.sleep(0.05)
        log.info(
            "Modbus TCP server on %s:%d, units %s",
            self.conn.host,
            self.conn.port,
            sorted({u for u, _ in self.images}),
        )

    def publish(self, samples: dict[str, Sample]) -> int:
        n = 0
        self.offline_units = {a.unit_id for a in self.assets if samples[a.twin_id].offline}
        for f in self.fields:
            twin, name = f.key  # type: ignore[misc]
            value = samples[twin].values[name]
            try:
                regs = encode(f, value, saturate=True)
            except EncodeError:  # e.g. a bit field: read-only, not simulated
                continue
            image = self.images[(f.unit_id, f.kind)]
            image[f.address : f.address + f.width] = regs
            n += f.width
        return n

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
        if self._task is not None:
            self._task.cancel()
