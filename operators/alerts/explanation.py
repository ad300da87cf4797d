"""What an alert version says: the published :class:`Alert` record of a live alert, its evidence
and its one-line summary.

The evidence is the window of the current run, the samples in it, the kind's own facts (peak score,
lowest health, faulty sensors, breaches, desync detail), the top contributing sensors, the
latest failure prediction (time to failure) and, unless only the built-in models raised the alert,
the ``sources`` (models) that did.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from operators.alerts.episode import KindState, LiveAlert
from operators.records.alerts import Alert, FailurePrediction, Kind, isa_state


def alert_version(
    twin_id: str,
    kind: Kind,
    live: LiveAlert,
    ts: datetime,
    event: str,
    evidence: dict[str, Any],
    resolved: tuple[datetime, str] | None = None,
) -> Alert:
    """The record of ``live`` as it stands at ``ts`` after ``event`` (``resolved``: when and by whom)."""
    return Alert(
        alert_id=live.alert_id,
        twin_id=twin_id,
        kind=kind,
        state=live.state,  # type: ignore[arg-type]
        severity=live.severity,
        version=live.version,
        event=event,
        opened_at=live.opened_at,
        updated_at=ts,
        acked_at=live.acked_at,
        acked_by=live.acked_by,
        resolved_at=resolved[0] if resolved else None,
        resolved_by=resolved[1] if resolved else None,
        escalation_level=live.escalation_level,
        flapping=live.flapping,
        summary=summary(twin_id, kind, evidence),
        evidence=evidence,
        isa_state=isa_state(
            live.state,
            live.condition,
            shelved=live.shelved_until is not None,
            suppressed=live.suppressed_by is not None,
            out_of_service=live.out_of_service,
        ),
        condition=live.condition,  # type: ignore[arg-type]
        shelved_until=live.shelved_until,
        shelved_by=live.shelved_by,
        shelve_reason=live.shelve_reason,
        suppressed_by=live.suppressed_by,
        out_of_service=live.out_of_service,
        standing=live.standing,
        reopened=live.reopened,
    )


def evidence(
    ks: KindState,
    ts: datetime,
    contributions: dict[str, float],
    failure: FailurePrediction | None,
    top_sensors: int,
) -> dict[str, Any]:
    """The evidence of a kind's alert at ``ts``: its run's facts (those not starting with ``_``), the
    ``top_sensors`` largest contributions (the run's own, else the twin's latest), ``failure`` and
    the sources that raised it (:attr:`LiveAlert.named_sources`)."""
    facts = {k: v for k, v in ks.facts.items() if not k.startswith("_")}
    if "breaches" in facts:
        facts["breaches"] = sorted(facts["breaches"].values(), key=lambda b: b["lead_s"])
    start = ks.onset or (ks.live.opened_at if ks.live else ts)
    ev: dict[str, Any] = {
        "window": {"start": start.isoformat(), "end": ts.isoformat()},
        "samples": ks.samples,
        **facts,
    }
    contrib = ks.facts.get("_contrib") or contributions
    if contrib:
        total = sum(contrib.values()) or 1.0
        top = sorted(contrib.items(), key=lambda kv: -kv[1])[:top_sensors]
        ev["top_sensors"] = [{"sensor": s, "share": round(v / total, 4)} for s, v in top]
    sources = ks.live.named_sources if ks.live else None
    if sources:
        ev["sources"] = list(sources)
    if failure is not None:
        f = failure
        ev["time_to_failure_s"] = f.rul_s
        ev["predicted_failure_at"] = (f.ts + timedelta(seconds=f.rul_s)).isoformat()
        ev["failure_probability"] = f.failure_probability
        if f.uncertainty is not None:
            ev["rul_uncertainty"] = f.uncertainty
    return ev


def summary(twin_id: str, kind: Kind, ev: dict[str, Any]) -> str:
    """One line for people: the twin, the kind, its main facts, the top sensors, the time to failure."""
    parts = [f"{twin_id}: {kind.replace('_', ' ')}"]
    if kind == "anomaly" and "peak_score" in ev:
        parts.append(f"score {ev['peak_score']:.3g} (threshold {ev['threshold']:.3g})")
    if kind == "condition" and "min_health" in ev:
        parts.append(f"health {ev['min_health']:.2f} against its healthy reference")
    if kind == "sensor_fault" and ev.get("sensor_faults"):
        parts.append(", ".join(f"{s} {k.replace('_', ' ')}" for s, k in sorted(ev["sensor_faults"].items())))
    if kind == "forecast_breach" and ev.get("breaches"):
        b = ev["breaches"][0]
        parts.append(f"{b['sensor']} predicted to cross {b['limit']} in {_human(b['lead_s'])}")
    if kind == "desync" and ev.get("desync"):
        parts.append("reported state differs from desired state")
    if kind == "device_offline" and ev.get("connectivity"):
        parts.append(f"device cannot be reached: {ev['connectivity'].get('reason')}")
    if ev.get("sources"):
        parts.append("raised by " + ", ".join(ev["sources"]))
    if ev.get("top_sensors") and kind != "sensor_fault":
        parts.append("top sensors " + ", ".join(f"{t['sensor']} {t['share']:.0%}" for t in ev["top_sensors"]))
    if "time_to_failure_s" in ev:
        parts.append(f"predicted failure in {_human(ev['time_to_failure_s'])} (p={ev['failure_probability']:.2f})")
    return "; ".join(parts)


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
