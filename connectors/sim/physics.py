"""Simple machine physics for the plant simulator (pure, deterministic given the RNG).

Pumps follow the affinity laws at a fixed valve position — flow ∝ speed, head ∝ speed²,
power ∝ speed³ — with a first-order lag on speed (motor ramp) and on temperature
(thermal lag), and vibration that grows with speed² plus noise. Compressors use the
same laws for flow, pressure rise and power.

>>> import random
>>> m = Machine("pump")
>>> m.speed_sp = m.speed = 1450.0
>>> a = m.step(0.1, random.Random(1))
>>> m.speed_sp = m.speed = 725.0
>>> b = m.step(0.1, random.Random(1))
>>> round(b["head_m"] / a["head_m"], 3), round(b["power_kw"] / a["power_kw"], 3)
(0.25, 0.125)
>>> abs(b["flow_m3h"] / a["flow_m3h"] - 0.5) < 0.01
True
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

KINDS = ("pump", "compressor")

SIGNALS: dict[str, tuple[str, ...]] = {
    "pump": (
        "speed_sp_rpm",
        "valve_pct",
        "speed_rpm",
        "flow_m3h",
        "head_m",
        "suction_bar",
        "power_kw",
        "temp_c",
        "vibration_mm_s",
    ),
    "compressor": (
        "speed_sp_rpm",
        "speed_rpm",
        "flow_m3h",
        "discharge_bar",
        "power_kw",
        "temp_c",
        "vibration_mm_s",
    ),
}
# Signals a command may set, and their limits.
SETPOINTS: dict[str, tuple[float, float]] = {"speed_sp_rpm": (0.0, 3600.0), "valve_pct": (0.0, 100.0)}


@dataclass
class Rated:
    speed_rpm: float = 1450.0
    flow_m3h: float = 120.0
    head_m: float = 40.0  # pump head, or compressor pressure rise in bar x 10
    power_kw: float = 18.0
    ambient_c: float = 25.0
    # Temperature rise at rated power, and the thermal time constant.
    temp_rise_c: float = 40.0
    thermal_tau_s: float = 30.0
    speed_tau_s: float = 1.0
    vibration_mm_s: float = 1.8
    vibration_noise: float = 0.08


@dataclass
class Effects:
    """What active faults do to the physics at this instant (all neutral by default)."""

    vibration_add: float = 0.0
    vibration_burst: float = 0.0  # std-dev of extra bursty noise
    suction_drop_bar: float = 0.0
    valve_factor: float = 1.0
    extra_heat_c: float = 0.0
    efficiency: float = 1.0  # < 1 means more power for the same work
    tripped: bool = False


@dataclass
class Machine:
    kind: str
    rated: Rated = field(default_factory=Rated)
    speed_sp: float = 1450.0
    valve_pct: float = 100.0
    speed: float = 0.0
    temp: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown machine type {self.kind!r}; the simulator knows {', '.join(KINDS)}")
        if self.kind == "compressor":
            self.rated = Rated(speed_rpm=2950.0, flow_m3h=600.0, head_m=7.0, power_kw=45.0, vibration_mm_s=2.2)
            self.speed_sp = 2950.0
        if self.temp is None:
            self.temp = self.rated.ambient_c

    def set(self, name: str, value: float) -> None:
        """Apply a setpoint write (clamped to its limits)."""
        lo, hi = SETPOINTS[name]
        value = min(max(float(value), lo), hi)
        if name == "speed_sp_rpm":
            self.speed_sp = value
        else:
            self.valve_pct = value

    def settle(self) -> None:
        """Start in steady state at the setpoints (a plant that was already running)."""
        self.speed = self.speed_sp
        self.temp = self._steady_temp(self._power(Effects()), Effects())

    def _valve(self, fx: Effects) -> float:
        return max(self.valve_pct / 100.0 * fx.valve_factor, 0.0)

    def _power(self, fx: Effects) -> float:
        n = max(self.speed, 0.0) / self.rated.speed_rpm
        return self.rated.power_kw * n**3 * (0.35 + 0.65 * self._valve(fx)) / max(fx.efficiency, 0.1)

    def _steady_temp(self, power: float, fx: Effects) -> float:
        """Ambient + a rise proportional to power (and fault heat): where the thermal lag heads."""
        r = self.rated
        return r.ambient_c + r.temp_rise_c * power / r.power_kw + fx.extra_heat_c

    def step(self, dt: float, rng: random.Random, fx: Effects | None = None) -> dict[str, float]:
        """Advance ``dt`` seconds and return every signal of this machine type."""
        fx = fx or Effects()
        r = self.rated
        target = 0.0 if fx.tripped else self.speed_sp
        self.speed += (target - self.speed) * (1.0 - math.exp(-dt / r.speed_tau_s))
        n = max(self.speed, 0.0) / r.speed_rpm
        valve = self._valve(fx)
        # Affinity laws at a given valve opening; the valve throttles flow and loads the pump less.
        flow = r.flow_m3h * n * math.sqrt(valve)
        head = r.head_m * n * n * (1.25 - 0.25 * valve)
        power = self._power(fx)
        assert self.temp is not None
        self.temp += (self._steady_temp(power, fx) - self.temp) * (1.0 - math.exp(-dt / r.thermal_tau_s))
        vib = r.vibration_mm_s * n * n + fx.vibration_add
        vib += rng.gauss(0.0, r.vibration_noise) + (rng.gauss(0.0, fx.vibration_burst) if fx.vibration_burst else 0)
        # Measurement noise: real transmitters never repeat a value exactly.
        flow_meas = flow * (1.0 + rng.gauss(0.0, 0.002)) if flow else 0.0
        speed_meas = self.speed + rng.gauss(0.0, 0.3) if self.speed > 1 else 0.0
        out = {
            "speed_sp_rpm": self.speed_sp,
            "speed_rpm": speed_meas,
            "flow_m3h": flow_meas,
            "power_kw": power,
            "temp_c": self.temp + rng.gauss(0.0, 0.05),
            "vibration_mm_s": abs(vib),
        }
        if self.kind == "pump":
            out["valve_pct"] = self.valve_pct
            out["head_m"] = head
            out["suction_bar"] = 1.5 - fx.suction_drop_bar + rng.gauss(0.0, 0.005)
        else:
            out["discharge_bar"] = 1.0 + head + rng.gauss(0.0, 0.01)
        # Power and head transmitters are noisy too (0.2 %): a computed, noise-free value would repeat
        # exactly at a steady operating point, which no real transmitter does.
        out["power_kw"] = power * (1.0 + rng.gauss(0.0, 0.002))
        if self.kind == "pump":
            out["head_m"] = head * (1.0 + rng.gauss(0.0, 0.002))
        return out
