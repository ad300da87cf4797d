"""Injectable faults with ground truth: what goes wrong, on which twin, from when to when.

A fault ramps in from ``onset_s`` to ``end_s`` (seconds after simulation start; ``end_s=None``
means until the end). :func:`effects` turns the active faults of a twin into physics
:class:`~connectors.sim.physics.Effects`; :class:`SensorFaults` distorts the readings
(stuck, drift, failure → quality ``bad``) after the physics.

>>> f = parse_fault("pump-1:bearing_wear:10:110:2")
>>> f.twin_id, f.kind, f.onset_s, f.end_s, f.severity
('pump-1', 'bearing_wear', 10.0, 110.0, 2.0)
>>> effects([f], 60.0).vibration_add > effects([f], 20.0).vibration_add > 0
True
>>> effects([f], 5.0).vibration_add
0.0
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from connectors.sim.physics import Effects

PHYSICAL = ("bearing_wear", "cavitation", "valve_closure", "overheating", "run_to_failure")
SENSOR = ("sensor_stuck", "sensor_drift", "sensor_failure")
# The device cannot be reached: its OPC-UA nodes read BadNoCommunication, its Modbus unit answers
# exception 0x0B (gateway target device failed to respond), its MQTT side goes silent.
COMM = ("device_offline",)
KINDS = PHYSICAL + SENSOR + COMM


@dataclass(frozen=True)
class Fault:
    twin_id: str
    kind: str
    onset_s: float
    end_s: float | None = None
    severity: float = 1.0
    # The affected reading for sensor faults (default: temp_c).
    sensor: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.end_s is not None and self.end_s <= self.onset_s:
            raise ValueError(f"fault {self.kind} on {self.twin_id}: end {self.end_s} must be after onset")

    def progress(self, t: float) -> float | None:
        """None before onset / after end; else 0…1 through the fault (1 when open-ended)."""
        if t < self.onset_s or (self.end_s is not None and t >= self.end_s):
            return None
        if self.end_s is None:
            return min((t - self.onset_s) / 60.0, 1.0)
        return (t - self.onset_s) / (self.end_s - self.onset_s)

    def ground_truth(self, start: datetime) -> dict:
        """The record written to the ground-truth file and topic (absolute times, ISO 8601)."""
        rec = asdict(self)
        rec["fault"] = rec.pop("kind")
        rec["onset"] = (start + timedelta(seconds=self.onset_s)).isoformat()
        rec["end"] = None if self.end_s is None else (start + timedelta(seconds=self.end_s)).isoformat()
        return rec


# Share of a fault's duration after which its effect is at full severity (see effects(); the
# simulator's "failure level"): wear and drift grow to the end, overheating saturates half-way, a
# run to failure trips at 98 %, a valve closes within a third, cavitation develops within a fifth.
FULL_AT = {
    "bearing_wear": 1.0,
    "cavitation": 0.2,
    "valve_closure": 1 / 3,
    "overheating": 0.5,
    "run_to_failure": 0.98,
    "sensor_stuck": 0.0,
    "sensor_drift": 1.0,
    "sensor_failure": 0.0,
    "device_offline": 0.0,
}
SLOW = ("bearing_wear", "overheating", "run_to_failure", "sensor_drift")


def failure_level_s(fault: Fault) -> float | None:
    """Seconds after the start when the fault reaches its full severity (None: open-ended)."""
    if fault.end_s is None:
        return None
    return fault.onset_s + FULL_AT[fault.kind] * (fault.end_s - fault.onset_s)


def parse_fault(spec: str) -> Fault:
    """``TWIN:KIND:ONSET_S[:END_S[:SEVERITY[:SENSOR]]]`` (END_S may be empty for open-ended)."""
    parts = spec.split(":")
    if len(parts) < 3:
        raise ValueError(f"fault {spec!r}: expected TWIN:KIND:ONSET_S[:END_S[:SEVERITY[:SENSOR]]]")
    try:
        return Fault(
            twin_id=parts[0],
            kind=parts[1],
            onset_s=float(parts[2]),
            end_s=float(parts[3]) if len(parts) > 3 and parts[3] else None,
            severity=float(parts[4]) if len(parts) > 4 and parts[4] else 1.0,
            sensor=parts[5] if len(parts) > 5 and parts[5] else None,
        )
    except ValueError as exc:
        raise ValueError(f"fault {spec!r}: {exc}") from None


def random_schedule(twin_ids: list[str], duration_s: float, rng: random.Random, count: int) -> list[Fault]:
    """``count`` faults on random twins, each lasting 10–30 % of the run, none before 10 % of it."""
    faults = []
    for _ in range(count):
        length = duration_s * rng.uniform(0.1, 0.3)
        onset = rng.uniform(0.1 * duration_s, max(duration_s - length, 0.1 * duration_s + 1))
        kind = rng.choice(PHYSICAL + SENSOR)  # faults a model can detect (device_offline is the twin's)
        faults.append(Fault(rng.choice(twin_ids), kind, round(onset, 1), round(onset + length, 1)))
    return faults


def effects(faults: list[Fault], t: float) -> Effects:
    """Combined physical effect of one twin's faults at time ``t``."""
    fx = Effects()
    for f in faults:
        p = f.progress(t)
        if p is None or f.kind in SENSOR or f.kind in COMM:
            continue
        s = f.severity
        if f.kind == "bearing_wear":
            fx.vibration_add += 4.0 * s * p**2
        elif f.kind == "cavitation":
            fx.suction_drop_bar += 0.8 * s * min(p * 5, 1.0)
            fx.vibration_burst += 1.5 * s
        elif f.kind == "valve_closure":
            fx.valve_factor *= max(1.0 - 0.9 * s * min(p * 3, 1.0), 0.02)
        elif f.kind == "overheating":
            fx.extra_heat_c += 35.0 * s * min(p * 2, 1.0)
        elif f.kind == "run_to_failure":
            fx.vibration_add += 6.0 * s * p**3
            fx.extra_heat_c += 20.0 * s * p**2
            fx.efficiency *= 1.0 - 0.3 * min(s * p, 1.0)
            fx.tripped = fx.tripped or p > 0.98
    return fx


class SensorFaults:
    """Applies stuck / drift / failure faults to one twin's readings; remembers stuck values."""

    def __init__(self, faults: list[Fault]) -> None:
        self.faults = [f for f in faults if f.kind in SENSOR]
        self._stuck: dict[Fault, float] = {}

    def apply(self, readings: dict[str, float], t: float) -> dict[str, str]:
        """Distort ``readings`` in place; return the quality of sensors that are not ``good``."""
        bad: dict[str, str] = {}
        for f in self.faults:
            sensor = f.sensor or "temp_c"
            p = f.progress(t)
            if p is None or sensor not in readings:
                self._stuck.pop(f, None)
                continue
            if f.kind == "sensor_stuck":
                readings[sensor] = self._stuck.setdefault(f, readings[sensor])
            elif f.kind == "sensor_drift":
                readings[sensor] += 0.1 * f.severity * (t - f.onset_s)
            else:
                bad[sensor] = "bad"
        return bad
