"""Simulator detection benchmark (``make bench-sim``): how fast and how reliably the live models see faults.

The plant simulator's physics (:class:`connectors.sim.plant.Plant`) runs in simulated time — no
sleeping, no network: this measures the models, not the transport — for pumps and compressors
at the simulator's sample period (``sim.tick_s``). Each twin gets faults of every kind at random
(seeded) onsets with healthy periods between them; the fault schedule is the ground truth. Healthy
periods keep a constant operating point unless ``--setpoint-changes-per-h`` adds speed changes.
Every sample goes through the live models step (:func:`operators.ml.live_step.step`, with the
configuration the models flow uses) and each anomaly score through the alert lifecycle
(:func:`operators.alerts.ordering.step`, default rules).

Scoring (:mod:`twinflow.demo.fault_scoring`, the demo report's code): an anomaly *episode* is a run of
flagged samples with no hole longer than ``--episode-gap-s``. Per fault kind: a fault is detected
when an episode (or an alert) starts between onset and end — an alarm already running at the
onset does not count; the delay is onset → that start.
Episodes and alerts starting outside every fault window (+ ``--grace-s`` after its end, for the
process to settle) are false alarms, counted per twin-day of healthy time (fault windows, graces
and the models' warm-up excluded). False alarms within ``--after-s`` after a fault's grace are
also listed under that fault's kind ("after"): the models re-learning normal after a fault.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from benchmarks.processes import interruptible
from connectors.bridges.mapping.loading import parse_mapping
from connectors.bridges.mapping.schema import Mapping
from connectors.sim.faults import SLOW, Fault, failure_level_s
from connectors.sim.physics import SETPOINTS, SIGNALS, Machine
from connectors.sim.plant import Plant
from operators.alerts.ordering import step as alerts_step
from operators.alerts.rules import AlertRules
from operators.ml.live_state import LiveModelConfig
from operators.ml.live_step import Reading
from operators.ml.live_step import step as models_step
from operators.records.alerts import Alert, AnomalyScore
from twinflow.demo.fault_scoring import AlertRow, episodes, evaluate
from twinflow.demo.fault_scoring import Fault as TruthFault
from twinflow.settings import AlertSettings, MlSettings, SimSettings

# The kinds of connectors/sim/faults.py that change what the sensors report. `sensor_failure` only
# marks a sensor's quality bad (its value stays right), which the data-quality path reports, not
# the models; add it with --kinds to see that.
DEFAULT_KINDS = (
    "bearing_wear",
    "cavitation",
    "valve_closure",
    "overheating",
    "run_to_failure",
    "sensor_stuck",
    "sensor_drift",
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class BenchConfig:
    """Size, fault schedule and scoring windows of one run (seconds unless named otherwise)."""

    pumps: int = 4
    compressors: int = 4
    hours: float = 6.0
    tick_s: float = field(default_factory=lambda: SimSettings().tick_s)
    seed: int = 7
    kinds: tuple[str, ...] = DEFAULT_KINDS
    severity: float = 1.0
    first_fault_s: float = 1800.0  # healthy start (the models warm up in the first minute)
    fault_s: tuple[float, float] = (300.0, 1200.0)
    healthy_s: tuple[float, float] = (1200.0, 3600.0)
    grace_s: float = 300.0
    after_s: float = 1800.0
    episode_gap_s: float = 60.0
    # Normal operation: speed setpoint changes (to 75–100 % of rated) at random times of healthy
    # periods, never within quiet_s before a fault or during a fault and its grace. 0: constant speed.
    setpoint_changes_per_h: float = 0.0
    quiet_s: float = 300.0
    anomaly_overrides: tuple[tuple[str, float], ...] = ()

    @property
    def duration_s(self) -> float:
        return self.hours * 3600.0


def twin_ids(cfg: BenchConfig) -> list[tuple[str, str]]:
    """(twin_id, machine type) of every simulated twin."""
    return [(f"sim-pump-{i:03d}", "pump") for i in range(cfg.pumps)] + [
        (f"sim-compressor-{i:03d}", "compressor") for i in range(cfg.compressors)
    ]


def plant_mapping(twins: list[tuple[str, str]]) -> Mapping:
    """A mapping serving every signal of each machine type (as one MQTT document per twin)."""
    assets = [
        {
            "twin_id": twin,
            "type": kind,
            "protocol": "mqtt",
            "topic": f"bench/{twin}/state",
            "params": {sig: {"path": sig} for sig in SIGNALS[kind]},
        }
        for twin, kind in twins
    ]
    return parse_mapping({"assets": assets}, "<bench-sim mapping>")


def fault_schedule(cfg: BenchConfig, twins: list[tuple[str, str]]) -> list[Fault]:
    """Faults one after another on each twin, healthy gaps between; kinds dealt round-robin (shuffled)."""
    rng = random.Random(cfg.seed)
    faults: list[Fault] = []
    deck: list[str] = []
    for twin, kind in twins:
        t = cfg.first_fault_s + rng.uniform(0, cfg.healthy_s[0])
        while True:
            length = rng.uniform(*cfg.fault_s)
            if t + length + cfg.grace_s > cfg.duration_s:
                break
            if not deck:
                deck = list(cfg.kinds)
                rng.shuffle(deck)
            fk = deck.pop()
            sensor = None
            if fk.startswith("sensor_"):
                sensor = rng.choice([s for s in SIGNALS[kind] if s not in SETPOINTS])
            faults.append(Fault(twin, fk, round(t, 1), round(t + length, 1), cfg.severity, sensor))
            t += length + rng.uniform(*cfg.healthy_s)
    return faults


def operating_changes(
    cfg: BenchConfig, twins: list[tuple[str, str]], faults: list[Fault]
) -> list[tuple[float, str, float]]:
    """(time, twin, new speed setpoint) of healthy operating changes, in time order (seeded)."""
    if cfg.setpoint_changes_per_h <= 0:
        return []
    rng = random.Random(cfg.seed + 1)
    out = []
    for twin, kind in twins:
        rated = Machine(kind).speed_sp
        busy = [
            (f.onset_s - cfg.quiet_s, (f.end_s or cfg.duration_s) + cfg.grace_s) for f in faults if f.twin_id == twin
        ]
        t = cfg.quiet_s  # let the models warm up on the first operating point
        while (t := t + rng.expovariate(cfg.setpoint_changes_per_h / 3600.0)) < cfg.duration_s - cfg.quiet_s:
            if not any(lo <= t <= hi for lo, hi in busy):
                out.append((round(t, 1), twin, round(rated * rng.uniform(0.75, 1.0))))
    return sorted(out)


@dataclass
class Trace:
    """What one twin's models and alerts produced (times in seconds from the start)."""

    flagged: list[float] = field(default_factory=list)
    alerts_opened: list[tuple[str, str, float]] = field(default_factory=list)  # (alert id, kind, time)
    first_score_s: float | None = None


def simulate(
    cfg: BenchConfig,
    faults: list[Fault],
    twins: list[tuple[str, str]],
    changes: list[tuple[float, str, float]] = (),
) -> tuple[dict[str, Trace], int]:
    """Run the physics, the live models and the alert lifecycle; returns per-twin traces and samples."""
    ml = MlSettings()
    if cfg.anomaly_overrides:
        ml = ml.model_copy(update={"anomaly": replace(ml.anomaly, **dict(cfg.anomaly_overrides))})
    model_cfg = LiveModelConfig(ml.model_config_for(failure=False))  # as flows/models.py
    rules: AlertRules = AlertSettings().rules
    plant = Plant(plant_mapping(twins), faults, seed=cfg.seed)
    traces = {twin: Trace() for twin, _ in twins}
    models: dict[str, Any] = dict.fromkeys(traces)
    lifecycles: dict[str, Any] = dict.fromkeys(traces)
    steps = int(cfg.duration_s / cfg.tick_s)
    pending = list(changes)[::-1]
    for _ in range(steps):
        while pending and pending[-1][0] <= plant.t:
            _, twin, speed = pending.pop()
            plant.set(twin, "speed_sp_rpm", speed)
        out = plant.step(cfg.tick_s)
        t = plant.t
        ts = T0 + timedelta(seconds=t)
        for twin, sample in out.items():
            models[twin], records = models_step(models[twin], Reading(ts, sample.values), model_cfg, twin)
            for rec in records:
                if not isinstance(rec, AnomalyScore):
                    continue  # forecasts carry no limits here: they cannot open alerts
                trace = traces[twin]
                if trace.first_score_s is None:
                    trace.first_score_s = t
                if rec.is_anomaly:
                    trace.flagged.append(t)
                lifecycles[twin], alerts = alerts_step(lifecycles[twin], rec, rules)
                trace.alerts_opened += _opened(alerts)
    for twin, lc in lifecycles.items():
        if lc is not None:
            traces[twin].alerts_opened += _opened(lc.flush())
    return traces, steps * len(twins)


def _opened(alerts: list[Alert]) -> list[tuple[str, str, float]]:
    """(alert id, kind, opening time in seconds from the start: event time, not release time)."""
    return [(a.alert_id, a.kind, (a.opened_at - T0).total_seconds()) for a in alerts if a.event == "opened"]


def _at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.median(values)) + 0.0, float(np.percentile(values, 90)) + 0.0  # + 0.0: no "-0.0"


def score(cfg: BenchConfig, faults: list[Fault], traces: dict[str, Trace]) -> dict[str, Any]:
    """Per kind: detections and delays of anomaly episodes and alerts; false alarms per twin-day."""
    truth = [TruthFault(f.twin_id, f.kind, _at(f.onset_s), _at(f.end_s or cfg.duration_s)) for f in faults]
    episode_rows, alert_rows = [], []
    for twin, tr in traces.items():
        for i, (start, end) in enumerate(episodes(tr.flagged, cfg.episode_gap_s)):
            row = AlertRow(f"{twin}#{i}", twin, "anomaly", "", "resolved", _at(start), None, _at(end), "")
            episode_rows.append(row)
        alert_rows += [AlertRow(a, twin, kind, "", "", _at(t), None, None, "") for a, kind, t in tr.alerts_opened]
    until = _at(cfg.duration_s)
    # A fault acts on samples with onset <= t < end (Fault.progress); a flag at t >= end is the
    # release (e.g. a stuck sensor jumping back), forgiven by the grace but not a detection.
    windows = {
        "grace": timedelta(seconds=cfg.grace_s),
        "detect_grace": timedelta(seconds=-cfg.tick_s / 2),
        "prediction_horizon": timedelta(0),  # no forecasts with limits here: nothing predicts
    }
    ev_anomaly = evaluate(truth, episode_rows, until=until, **windows)
    ev_alert = evaluate(truth, alert_rows, until=until, **windows)

    # Healthy time: after the models' warm-up, outside fault windows + grace.
    healthy_s = 0.0
    for twin, tr in traces.items():
        start = tr.first_score_s if tr.first_score_s is not None else cfg.duration_s
        busy = sum(
            max(0.0, min((f.end_s or cfg.duration_s) + cfg.grace_s, cfg.duration_s) - max(f.onset_s, start))
            for f in faults
            if f.twin_id == twin
        )
        healthy_s += max(cfg.duration_s - start - busy, 0.0)
    twin_days = healthy_s / 86400.0

    def after_kind(row: AlertRow) -> str | None:
        """The kind of the fault whose grace ended at most after_s before this false alarm."""
        t = (row.opened_at - T0).total_seconds()
        for f in faults:
            end = (f.end_s or cfg.duration_s) + cfg.grace_s
            if f.twin_id == row.twin_id and end < t <= end + cfg.after_s:
                return f.kind
        return None

    kinds: dict[str, dict[str, Any]] = {}
    for kind in cfg.kinds:
        res_a = [r for r in ev_anomaly.results if r.fault.fault == kind]
        res_l = [r for r in ev_alert.results if r.fault.fault == kind]
        delays_a = [r.delay_s for r in res_a if r.delay_s is not None]
        delays_l = [r.delay_s for r in res_l if r.delay_s is not None]
        n = len(res_a)
        # slow faults: how long before the fault reaches its failure level (full severity) it was seen
        full = {(f.twin_id, f.onset_s): failure_level_s(f) for f in faults}
        before_a = [full[(r.fault.twin_id, (r.fault.onset - T0).total_seconds())] - (r.fault.onset - T0).total_seconds()
                    - r.delay_s for r in res_a if r.delay_s is not None]  # fmt: skip
        before_l = [full[(r.fault.twin_id, (r.fault.onset - T0).total_seconds())] - (r.fault.onset - T0).total_seconds()
                    - r.delay_s for r in res_l if r.delay_s is not None]  # fmt: skip
        kinds[kind] = {
            "faults": n,
            "detected": len(delays_a),
            "detection_rate": len(delays_a) / n if n else None,
            "delay_median_s": _stats(delays_a)[0],
            "delay_p90_s": _stats(delays_a)[1],
            "alerted": len(delays_l),
            "alert_rate": len(delays_l) / n if n else None,
            "alert_delay_median_s": _stats(delays_l)[0],
            "alert_delay_p90_s": _stats(delays_l)[1],
            "false_episodes_after": sum(after_kind(a) == kind for a in ev_anomaly.false_alarms),
            "false_alerts_after": sum(after_kind(a) == kind for a in ev_alert.false_alarms),
            "lead_to_failure_median_s": _stats(before_a)[0] if kind in SLOW else None,
            "alert_lead_to_failure_median_s": _stats(before_l)[0] if kind in SLOW else None,
        }
    n_faults = len(faults)
    all_a = [r.delay_s for r in ev_anomaly.results if r.delay_s is not None]
    all_l = [r.delay_s for r in ev_alert.results if r.delay_s is not None]
    return {
        "kinds": kinds,
        "overall": {
            "faults": n_faults,
            "detected": len(all_a),
            "detection_rate": len(all_a) / n_faults if n_faults else None,
            "delay_median_s": _stats(all_a)[0],
            "delay_p90_s": _stats(all_a)[1],
            "alerted": len(all_l),
            "alert_rate": len(all_l) / n_faults if n_faults else None,
            "alert_delay_median_s": _stats(all_l)[0],
            "alert_delay_p90_s": _stats(all_l)[1],
        },
        "false_alarms": {
            "healthy_twin_days": twin_days,
            "episodes": len(ev_anomaly.false_alarms),
            "alerts": len(ev_alert.false_alarms),
            "episodes_per_twin_day": len(ev_anomaly.false_alarms) / twin_days if twin_days else None,
            "alerts_per_twin_day": len(ev_alert.false_alarms) / twin_days if twin_days else None,
        },
    }


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Schedule, simulate and score one configuration; the result is plain data."""
    twins = twin_ids(cfg)
    faults = fault_schedule(cfg, twins)
    changes = operating_changes(cfg, twins, faults)
    t0 = time.perf_counter()
    traces, samples = simulate(cfg, faults, twins, changes)
    elapsed = time.perf_counter() - t0
    result = score(cfg, faults, traces)
    result["run"] = {
        "twins": len(twins),
        "setpoint_changes": len(changes),
        "simulated_twin_days": len(twins) * cfg.duration_s / 86400.0,
        "samples": samples,
        "wall_s": elapsed,
        "samples_per_s": samples / elapsed if elapsed else None,
    }
    result["config"] = {k: v for k, v in asdict(cfg).items()}
    return result


# ----------------------------------------------------------------------------- output
def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.0%}" if unit == "%" else f"{v:,.0f}{unit}" if abs(v) >= 10 else f"{v:.1f}{unit}"
    return str(v)


COLUMNS = (
    ("fault kind", None, ""),
    ("faults", "faults", ""),
    ("detected", "detected", ""),
    ("rate", "detection_rate", "%"),
    ("delay median s", "delay_median_s", ""),
    ("delay p90 s", "delay_p90_s", ""),
    ("alerted", "alerted", ""),
    ("alert rate", "alert_rate", "%"),
    ("alert delay median s", "alert_delay_median_s", ""),
    ("alert delay p90 s", "alert_delay_p90_s", ""),
    ("false episodes after", "false_episodes_after", ""),
    ("false alerts after", "false_alerts_after", ""),
    ("lead to failure level s", "lead_to_failure_median_s", ""),
    ("alert lead to failure level s", "alert_lead_to_failure_median_s", ""),
)


def rows(result: dict[str, Any]) -> list[list[str]]:
    out = []
    for name, rec in [*result["kinds"].items(), ("all", result["overall"])]:
        out.append([name] + [_fmt(rec.get(key), unit) for _, key, unit in COLUMNS[1:]])
    return out


def markdown(result: dict[str, Any]) -> str:
    head = "| " + " | ".join(c for c, _, _ in COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    return head + "".join("| " + " | ".join(r) + " |\n" for r in rows(result))


def summary(result: dict[str, Any]) -> str:
    fa, run_ = result["false_alarms"], result["run"]
    return (
        f"False alarms over {fa['healthy_twin_days']:.2f} healthy twin-days: {fa['episodes']} anomaly episodes "
        f"({_fmt(fa['episodes_per_twin_day'])}/twin-day), {fa['alerts']} alerts "
        f"({_fmt(fa['alerts_per_twin_day'])}/twin-day). {run_['samples']:,} samples of {run_['twins']} twins "
        f"({run_['simulated_twin_days']:.2f} twin-days, {run_['setpoint_changes']} healthy speed setpoint changes) "
        f"in {run_['wall_s']:.0f} s "
        f"({_fmt(run_['samples_per_s'])} samples/s, models + alerts)."
    )


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    cfg = result["config"]
    table = Table(
        title=f"Simulator detection: {cfg['pumps']} pumps + {cfg['compressors']} compressors, "
        f"{cfg['hours']} h at {cfg['tick_s']} s, seed {cfg['seed']}"
    )
    for name, _, _ in COLUMNS:
        table.add_column(name, justify="left" if name == "fault kind" else "right")
    for r in rows(result):
        table.add_row(*r)
    console = Console(width=200)
    console.print(table)
    console.print(summary(result))


def _parse_overrides(pairs: list[str]) -> tuple[tuple[str, float], ...]:
    out = []
    for pair in pairs:
        key, _, value = pair.partition("=")
        out.append((key, float(value) if "." in value or "e" in value else int(value)))
    return tuple(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = BenchConfig()
    ap.add_argument("--pumps", type=int, default=d.pumps)
    ap.add_argument("--compressors", type=int, default=d.compressors)
    ap.add_argument("--hours", type=float, default=d.hours, help="simulated hours per twin")
    ap.add_argument("--tick-s", type=float, default=d.tick_s, help="sample period (default: sim.tick_s)")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--kinds", default=",".join(d.kinds), help="comma-separated fault kinds")
    ap.add_argument("--severity", type=float, default=d.severity)
    ap.add_argument("--grace-s", type=float, default=d.grace_s)
    ap.add_argument("--episode-gap-s", type=float, default=d.episode_gap_s)
    ap.add_argument(
        "--setpoint-changes-per-h",
        type=float,
        default=d.setpoint_changes_per_h,
        help="healthy speed setpoint changes per twin and hour (default 0: constant operating point)",
    )
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override AnomalyConfig")
    ap.add_argument("--no-write", action="store_true", help="do not append to benchmarks/RESULTS.md")
    a = ap.parse_args(argv)
    cfg = BenchConfig(
        pumps=a.pumps,
        compressors=a.compressors,
        hours=a.hours,
        tick_s=a.tick_s,
        seed=a.seed,
        kinds=tuple(k.strip() for k in a.kinds.split(",") if k.strip()),
        severity=a.severity,
        grace_s=a.grace_s,
        episode_gap_s=a.episode_gap_s,
        setpoint_changes_per_h=a.setpoint_changes_per_h,
        anomaly_overrides=_parse_overrides(a.set),
    )
    result = run(cfg)
    print_table(result)
    if not a.no_write:
        from benchmarks.machine import append_result

        args = " ".join(sys.argv[1:] if argv is None else argv)
        overrides = ", ".join(a.set) or "live defaults"
        append_result(
            "Simulator fault detection (live models + alert lifecycle)",
            f"make bench-sim  (.venv/bin/python -m benchmarks.sim_detection {args})".replace(" )", ")"),
            f"{cfg.pumps} pumps + {cfg.compressors} compressors × {cfg.hours} simulated h at the simulator's "
            f"{cfg.tick_s} s sample period, seed {cfg.seed}, severity {cfg.severity}; faults of "
            f"{cfg.fault_s[0]:.0f}–{cfg.fault_s[1]:.0f} s with {cfg.healthy_s[0]:.0f}–{cfg.healthy_s[1]:.0f} s "
            f"healthy between; {cfg.setpoint_changes_per_h:g} speed setpoint changes per twin-hour in healthy time; "
            f"models: {overrides}; alert rules: defaults. Episode gap {cfg.episode_gap_s:.0f} s, "
            f"grace after a fault {cfg.grace_s:.0f} s. Delays are onset → first anomaly episode / alert "
            f"opened.\n\n{markdown(result)}\n{summary(result)} Other jobs shared the 2 cores.",
        )
    return result


if __name__ == "__main__":
    with interruptible("it keeps everything in memory"):
        main()
