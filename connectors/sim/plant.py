"""The simulated plant: one :class:`Machine` per mapped asset, its faults, and a clock (pure).

>>> from connectors.bridges.mapping.loading import parse_mapping
>>> m = parse_mapping({"assets": [{"twin_id": "p1", "type": "pump", "protocol": "modbus",
...     "params": {"speed_sp_rpm": {"register": "holding", "address": 0, "writable": True},
...                "speed_rpm": {"register": "input", "address": 0}}}]})
>>> plant = Plant(m, seed=1)
>>> plant.set("p1", "speed_sp_rpm", 1000)
True
>>> for _ in range(100):
...     out = plant.step(0.1)
>>> round(out["p1"].values["speed_rpm"])
1000
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from connectors.bridges.mapping.schema import Mapping
from connectors.sim.faults import COMM, Fault, SensorFaults, effects
from connectors.sim.physics import SETPOINTS, SIGNALS, Machine


def simulated(asset: object) -> bool:
    """False for assets the simulator cannot serve: MQTT asset templates and Sparkplug B devices."""
    return not (getattr(asset, "is_template", False) or getattr(asset, "sparkplug", None) is not None)


class PlantError(ValueError):
    """The mapping asks for something the simulator cannot serve (names file, asset and field)."""


@dataclass
class Sample:
    """One twin's served values after a tick; ``quality`` lists sensors that are not good."""

    values: dict[str, float]
    quality: dict[str, str] = field(default_factory=dict)
    offline: bool = False  # a device_offline fault: the device cannot be reached (values are stale)


class Plant:
    def __init__(self, mapping: Mapping, faults: list[Fault] | None = None, seed: int = 7) -> None:
        self.mapping = mapping
        self.rng = random.Random(seed)
        self.t = 0.0
        self.machines: dict[str, Machine] = {}
        # twin → {parameter: signal}
        self.signals: dict[str, dict[str, str]] = {}
        problems = []
        for i, a in enumerate(mapping.assets):
            if simulated(a) is False:
                continue  # an MQTT asset template or a Sparkplug device: not simulated
            if a.type not in SIGNALS:
                problems.append(
                    f"asset {a.twin_id!r} (assets[{i}]), field type: the simulator knows "
                    f"{', '.join(SIGNALS)}, not {a.type!r}"
                )
                continue
            self.machines[a.twin_id] = Machine(a.type)
            self.signals[a.twin_id] = {}
            for name, p in a.params.items():
                sig = p.signal or name
                if sig not in SIGNALS[a.type]:
                    problems.append(
                        f"asset {a.twin_id!r} (assets[{i}]), field params.{name}: a simulated {a.type} "
                        f"has no signal {sig!r} (set `signal` to one of {', '.join(SIGNALS[a.type])})"
                    )
                self.signals[a.twin_id][name] = sig
        if problems:
            raise PlantError(f"mapping file {mapping.source}:\n" + "\n".join(f"  {p}" for p in problems))
        self.faults: dict[str, list[Fault]] = {t: [] for t in self.machines}
        for f in faults or []:
            if f.twin_id not in self.faults:
                raise PlantError(f"fault {f.kind}: twin {f.twin_id!r} is not in {mapping.source}")
            self.faults[f.twin_id].append(f)
        self.sensor_faults = {t: SensorFaults(fs) for t, fs in self.faults.items()}
        # Start in steady state at rated speed (the plant was running before the simulator started).
        for m in self.machines.values():
            m.settle()

    def set(self, twin_id: str, parameter: str, value: float) -> bool:
        """Apply a setpoint write; False when the parameter is not a setpoint of the simulator."""
        sig = self.signals.get(twin_id, {}).get(parameter)
        if sig not in SETPOINTS:
            return False
        self.machines[twin_id].set(sig, value)
        return True

    def setpoint(self, twin_id: str, parameter: str) -> float | None:
        sig = self.signals[twin_id].get(parameter)
        m = self.machines[twin_id]
        return {"speed_sp_rpm": m.speed_sp, "valve_pct": m.valve_pct}.get(sig or "")

    def step(self, dt: float) -> dict[str, Sample]:
        self.t += dt
        out = {}
        for twin, m in self.machines.items():
            signals = m.step(dt, self.rng, effects(self.faults[twin], self.t))
            bad = self.sensor_faults[twin].apply(signals, self.t)
            values = {name: signals[sig] for name, sig in self.signals[twin].items()}
            quality = {name: bad[sig] for name, sig in self.signals[twin].items() if sig in bad}
            offline = any(f.kind in COMM and f.progress(self.t) is not None for f in self.faults[twin])
            out[twin] = Sample(values, quality, offline)
        return out
