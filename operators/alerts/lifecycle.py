"""The alert lifecycle: model outputs in, few, early and explained alerts out.

Plain Python with an event-time clock: one :class:`TwinAlerts` per twin holds the state, and
``step(state, record)`` returns the new alert versions (the flow keys by twin_id and calls it
from ``stateful_flat_map``). The clock is the newest ``ts`` seen in the twin's data inputs,
so replays and tests behave exactly as live runs.

Per twin and kind (the dedup key) there is at most one alert that is not resolved:

* a **condition** per kind (anomaly score over threshold, RUL under / failure probability over
  a threshold, a forecast limit breach within the horizon, a desync escalation) has three
  levels: *above* (opens), *below* (clears) and the hysteresis band between;
* it must stay above for ``min_duration_s`` to **open**, and below for ``cool_down_s`` to
  **resolve** (automatically, ``resolved_by='auto'``); in the band nothing changes;
* **flapping** (``flap_count`` openings within ``flap_window_s``) marks the alert and
  multiplies its cool-down by ``flap_cool_down_factor``;
* an alert not acknowledged after ``escalate_after_s`` is **escalated** (level + 1, severity
  one step up), again after each further period;
* while a twin is in **maintenance** nothing opens and nothing escalates;
* people **acknowledge** or **resolve** through :class:`AlertAction` records (an action for an
  alert id not known yet waits for it, at most ``pending_action_ttl_s`` of event time).

ISA-18.2 alarm states (:func:`operators.records.alerts.isa_state`) on top of that:

* **unacknowledged/acknowledged × active/cleared**: ``cool_down_s`` is the alarm's off-delay; then
  the condition has cleared. Alarms are non-latching by default (cleared → returned to normal);
  with ``latch_unacknowledged`` an unacknowledged cleared alarm stays *unack_cleared* (RTNUN) until
  acknowledged. Acknowledging a cleared alarm returns it to normal.
* **shelved** (an action with an expiry, at most ``max_shelve_s``, and a reason): not annunciated,
  not escalated; when the shelf expires (or on *unshelve*) an alarm whose condition is still active
  is **annunciated again**: unacknowledged, ``reopened`` + 1.
* **suppressed by design**: while the twin is in maintenance (alerts open before keep their
  record, marked ``suppressed_by='maintenance'``) or while a parent asset has an active alarm
  (:class:`ParentAlarm`; the child's alarms open suppressed, ``suppressed_by='parent:<id>'``).
* **out of service**: an alarm (twin × kind) taken out of service by a person opens nothing and
  escalates nothing until returned to service.
* **chattering**: the flapping detection above; **standing**: active longer than ``standing_after_s``.

:class:`TwinAlerts` applies records in the order it is given them. The inputs come from several
Kafka topics whose relative order differs between a live run and a replay, so the flow goes
through :class:`OrderedTwinAlerts`: a per-twin buffer that applies records in event-time order
(``ts``, then status < model outputs < actions, then arrival) once the twin's newest data ``ts``
is ``reorder_window_s`` past them, and everything at end of input (``flush``). Any two arrival
orders that differ only within the window give the same alert versions.

Each new version carries an explanation: the evidence window, top contributing sensors,
predicted time to failure and the kind's own facts (peak score, breaches, desync detail).
"""

from __future__ import annotations

import hashlib
import heapq
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from operators.records.alerts import (
    SEVERITIES,
    Alert,
    AlertAction,
    AnomalyScore,
    DesyncEscalation,
    FailurePrediction,
    ForecastPoint,
    InputRecord,
    Kind,
    ParentAlarm,
    Severity,
    TwinStatus,
    isa_state,
)
from operators.strict import STRICT

ABOVE, BAND, BELOW = 1, 0, -1


@dataclass(frozen=True, slots=True)
class KindRule:
    """Timing of one kind: seconds above to open, below to resolve."""

    __pydantic_config__ = STRICT  # typos in [alerts.rules.*] are errors, not ignored

    min_duration_s: float = 60.0
    cool_down_s: float = 300.0


@dataclass(frozen=True, slots=True)
class AlertRules:
    """Thresholds and timings of the lifecycle (from ``[alerts]`` in the settings)."""

    __pydantic_config__ = STRICT  # typos in [alerts.rules] are errors, not ignored

    anomaly: KindRule = KindRule(60.0, 300.0)
    condition: KindRule = KindRule(60.0, 300.0)  # health below health_open (docs/ml.md)
    sensor_fault: KindRule = KindRule(0.0, 120.0)  # the detector already waits (e.g. a frozen run)
    failure: KindRule = KindRule(0.0, 600.0)
    forecast_breach: KindRule = KindRule(0.0, 600.0)
    desync: KindRule = KindRule(0.0, 0.0)  # reconciliation already debounces desync
    # Anomaly: clear when score < threshold × clear_ratio; severity from score / threshold (scores are
    # bounded in [0, 1): at the default threshold 0.5, major from 0.7 (p = 1e-23), critical from 0.9).
    anomaly_clear_ratio: float = 0.8
    anomaly_major_ratio: float = 1.4
    anomaly_critical_ratio: float = 1.8
    # Condition: open when the health index drops below health_open, clear above health_clear;
    # severity major below health_major, critical below health_critical.
    health_open: float = 0.5
    health_clear: float = 0.7
    health_major: float = 0.25
    health_critical: float = 0.05
    # Failure: open when RUL ≤ rul_open_s or probability ≥ probability_open.
    rul_open_s: float = 72 * 3600.0
    probability_open: float = 0.5
    failure_clear_factor: float = 1.25  # clear when RUL > rul_open_s × f and p < probability_open / f
    # Forecast: open when a limit breach is predicted within breach_horizon_s.
    breach_horizon_s: float = 24 * 3600.0
    breach_clear_factor: float = 1.25
    # Severity from lead time (time to failure / to breach).
    lead_major_s: float = 24 * 3600.0
    lead_critical_s: float = 4 * 3600.0
    # Flapping, escalation.
    flap_count: int = 3
    flap_window_s: float = 3600.0
    flap_cool_down_factor: float = 4.0
    escalate_after_s: float = 1800.0
    top_sensors: int = 3
    # Cross-topic order: records are applied in event-time order once the twin's newest data ts is this
    # far past them (the added alert latency, in event time); at most reorder_max_held wait.
    reorder_window_s: float = 30.0
    reorder_max_held: int = 100_000
    # An action for an alert id not opened yet waits this long (event time), at most 64 of them.
    pending_action_ttl_s: float = 3600.0
    # ISA-18.2: latch unacknowledged cleared alarms (RTNUN) until acknowledged; standing alarms;
    # the longest shelving a person may ask for.
    latch_unacknowledged: bool = False
    standing_after_s: float = 24 * 3600.0
    max_shelve_s: float = 24 * 3600.0

    def timing(self, kind: Kind) -> KindRule:
        return getattr(self, kind)


def alert_id_for(twin_id: str, kind: str, opened_at: datetime) -> str:
    """Deterministic id: a replay opens the same alert under the same id."""
    digest = hashlib.blake2b(f"{twin_id}|{kind}|{opened_at.isoformat()}".encode(), digest_size=6)
    return f"al-{digest.hexdigest()}"


def _sev_max(a: Severity, b: Severity) -> Severity:
    return a if SEVERITIES.index(a) >= SEVERITIES.index(b) else b


def _sev_up(s: Severity) -> Severity:
    return SEVERITIES[min(SEVERITIES.index(s) + 1, len(SEVERITIES) - 1)]


def _lead_severity(lead_s: float, rules: AlertRules) -> Severity:
    if lead_s <= rules.lead_critical_s:
        return "critical"
    return "major" if lead_s <= rules.lead_major_s else "minor"


@dataclass(slots=True)
class _Open:
    """The live (not resolved) alert of one kind."""

    alert_id: str
    opened_at: datetime
    severity: Severity
    version: int = 1
    state: str = "open"
    acked_at: datetime | None = None
    acked_by: str | None = None
    escalation_level: int = 0
    flapping: bool = False
    # ISA-18.2
    condition: str = "active"
    shelved_until: datetime | None = None
    shelved_by: str | None = None
    shelve_reason: str = ""
    suppressed_by: str | None = None
    out_of_service: bool = False
    standing: bool = False
    reopened: int = 0
    annunciated_at: datetime | None = None  # escalation counts from here (opened_at, or the reopening)
    base_level: int = 0  # escalation level at annunciated_at

    @property
    def annunciated(self) -> bool:
        return self.shelved_until is None and self.suppressed_by is None and not self.out_of_service


@dataclass(slots=True)
class _KindState:
    """Condition tracking and the live alert of one (twin, kind)."""

    onset: datetime | None = None  # first sample of the current run above
    clear_since: datetime | None = None  # first sample of the current run below (while open)
    last_ts: datetime | None = None
    samples: int = 0
    facts: dict[str, Any] = field(default_factory=dict)  # kind-specific evidence
    severity: Severity = "minor"
    live: _Open | None = None
    openings: deque = field(default_factory=lambda: deque(maxlen=32))

    def reset_run(self) -> None:
        self.onset = None
        self.samples = 0
        self.facts = {}
        self.severity = "minor"


@dataclass(slots=True)
class TwinAlerts:
    """All alert state of one twin; picklable (Bytewax snapshots it for recovery)."""

    twin_id: str
    rules: AlertRules
    now: datetime | None = None
    maintenance: bool = False
    kinds: dict[str, _KindState] = field(default_factory=dict)
    contributions: dict[str, float] = field(default_factory=dict)  # latest anomaly contributions
    failure: FailurePrediction | None = None  # latest failure prediction
    forecasts: dict[str, ForecastPoint] = field(default_factory=dict)  # latest per sensor
    pending_actions: dict[str, AlertAction] = field(default_factory=dict)
    closed_ids: deque = field(default_factory=lambda: deque(maxlen=256))
    late_ignored: int = 0
    suppressed: int = 0
    actions_expired: int = 0
    parents: dict[str, str] = field(default_factory=dict)  # parent twin id → its active alert id
    out_of_service: dict[str, str] = field(default_factory=dict)  # kind → alert id it was taken with

    # ------------------------------------------------------------------ entry point
    def apply(self, rec: InputRecord) -> list[Alert]:
        """Feed one record; returns the alert versions it caused (often none)."""
        if isinstance(rec, AlertAction):
            return self._action(rec)
        out: list[Alert] = []
        if self.now is None or rec.ts > self.now:
            self.now = rec.ts
            self._expire_pending()
        if isinstance(rec, TwinStatus):
            was, self.maintenance = self.maintenance, rec.maintenance
            if rec.maintenance:
                for ks in self.kinds.values():
                    if ks.live is None:
                        ks.reset_run()
            if was != rec.maintenance:
                out += self._resuppress(rec.ts)
        elif isinstance(rec, ParentAlarm):
            if rec.active:
                self.parents[rec.parent_id] = rec.alert_id
            elif self.parents.get(rec.parent_id) == rec.alert_id:
                del self.parents[rec.parent_id]
            out += self._resuppress(rec.ts)
        elif isinstance(rec, AnomalyScore):
            out += self._anomaly(rec)
            if rec.health is not None:
                out += self._condition(rec)
            out += self._sensor_fault(rec)
        elif isinstance(rec, FailurePrediction):
            out += self._failure(rec)
        elif isinstance(rec, ForecastPoint):
            out += self._forecast(rec)
        elif isinstance(rec, DesyncEscalation):
            out += self._desync(rec)
        out += self._timers()
        return out

    def advance(self, ts: datetime) -> list[Alert]:
        """Move the clock to ``ts`` without data (a twin gone quiet): shelf expiry, standing, escalation."""
        if self.now is not None and ts <= self.now:
            return []
        self.now = ts
        self._expire_pending()
        return self._timers()

    def next_due(self) -> datetime | None:
        """The earliest event time a timer (a shelf's expiry) needs the clock to reach, if any."""
        dues = [ks.live.shelved_until for ks in self.kinds.values() if ks.live and ks.live.shelved_until]
        return min(dues, default=None)

    def _suppression(self) -> str | None:
        if self.maintenance:
            return "maintenance"
        return f"parent:{min(self.parents)}" if self.parents else None

    def _resuppress(self, ts: datetime) -> list[Alert]:
        """Maintenance or a parent's alarm began or ended: mark live alerts (suppressed by design)."""
        out = []
        want = self._suppression()
        for kind, ks in self.kinds.items():
            live = ks.live
            if live is None or live.suppressed_by == want:
                continue
            live.suppressed_by = want
            if want is None:
                live.annunciated_at, live.base_level = ts, live.escalation_level
            out.append(self._version(kind, ks, ts, "suppressed" if want else "unsuppressed"))  # type: ignore[arg-type]
        return out

    # ------------------------------------------------------------------ conditions
    def _anomaly(self, rec: AnomalyScore) -> list[Alert]:
        r = self.rules
        if rec.contributions:
            self.contributions = dict(rec.contributions)
        if rec.is_anomaly or rec.score >= rec.threshold:
            level = ABOVE
        elif rec.score < rec.threshold * r.anomaly_clear_ratio:
            level = BELOW
        else:
            level = BAND
        ratio = rec.score / rec.threshold if rec.threshold > 0 else float("inf")
        sev: Severity = (
            "critical" if ratio >= r.anomaly_critical_ratio else "major" if ratio >= r.anomaly_major_ratio else "minor"
        )

        def facts(f: dict[str, Any]) -> None:
            if rec.score >= f.get("peak_score", float("-inf")):
                f["peak_score"] = rec.score
                f["peak_at"] = rec.ts.isoformat()
            f["threshold"] = rec.threshold
            f["last_score"] = rec.score
            if rec.contributions:
                acc = f.setdefault("_contrib", {})
                for s, share in rec.contributions.items():
                    acc[s] = acc.get(s, 0.0) + share

        return self._observe("anomaly", rec.ts, level, sev if level == ABOVE else None, facts)

    def _condition(self, rec: AnomalyScore) -> list[Alert]:
        """The slow time scale: the twin's health against its healthy reference."""
        r = self.rules
        h = rec.health
        assert h is not None
        level = ABOVE if h < r.health_open else BELOW if h >= r.health_clear else BAND
        sev: Severity = "critical" if h < r.health_critical else "major" if h < r.health_major else "minor"

        def facts(f: dict[str, Any]) -> None:
            if h <= f.get("min_health", 2.0):
                f["min_health"] = h
                f["min_health_at"] = rec.ts.isoformat()
            f["health"] = h
            if rec.drivers:
                f["drivers"] = dict(rec.drivers)
                acc = f.setdefault("_contrib", {})
                for s, sh in rec.drivers.items():
                    acc[s] = acc.get(s, 0.0) + (1.0 - sh)

        return self._observe("condition", rec.ts, level, sev if level == ABOVE else None, facts)

    def _sensor_fault(self, rec: AnomalyScore) -> list[Alert]:
        """Sensors that lie (frozen, out of range, spiking, quantised, silent), by name."""
        ks = self.kinds.get("sensor_fault")
        if not rec.sensor_faults and (ks is None or (ks.live is None and ks.onset is None)):
            return []  # the usual record: nothing to track
        level = ABOVE if rec.sensor_faults else BELOW
        serious = any(kind in ("out_of_range", "silent") for kind in rec.sensor_faults.values())
        sev: Severity = "major" if serious else "minor"

        def facts(f: dict[str, Any]) -> None:
            faults = f.setdefault("sensor_faults", {})
            faults.update(rec.sensor_faults)
            acc = f.setdefault("_contrib", {})
            for s in rec.sensor_faults:
                acc[s] = acc.get(s, 0.0) + 1.0

        return self._observe("sensor_fault", rec.ts, level, sev if level == ABOVE else None, facts)

    def _failure(self, rec: FailurePrediction) -> list[Alert]:
        r = self.rules
        self.failure = rec
        if rec.rul_s <= r.rul_open_s or rec.failure_probability >= r.probability_open:
            level = ABOVE
        elif (
            rec.rul_s > r.rul_open_s * r.failure_clear_factor
            and rec.failure_probability < r.probability_open / r.failure_clear_factor
        ):
            level = BELOW
        else:
            level = BAND
        sev = _lead_severity(rec.rul_s, r)
        if rec.failure_probability >= 0.9:
            sev = _sev_max(sev, "major")

        def facts(f: dict[str, Any]) -> None:
            f["min_rul_s"] = min(rec.rul_s, f.get("min_rul_s", float("inf")))
            f["max_failure_probability"] = max(rec.failure_probability, f.get("max_failure_probability", 0.0))

        return self._observe("failure", rec.ts, level, sev if level == ABOVE else None, facts)

    def _forecast(self, rec: ForecastPoint) -> list[Alert]:
        r = self.rules
        prev = self.forecasts.get(rec.sensor)
        if prev is not None and rec.ts < prev.ts:
            self.late_ignored += 1
            return []
        self.forecasts[rec.sensor] = rec
        levels, leads = [], []
        for fp in self.forecasts.values():
            lead = (fp.breach_at - fp.ts).total_seconds() if fp.breach_at is not None else None
            if lead is not None and lead <= r.breach_horizon_s:
                levels.append(ABOVE)
                leads.append(max(lead, 0.0))
            elif lead is None or lead > r.breach_horizon_s * r.breach_clear_factor:
                levels.append(BELOW)
            else:
                levels.append(BAND)
        level = ABOVE if ABOVE in levels else BELOW if all(lv == BELOW for lv in levels) else BAND
        sev = _lead_severity(min(leads), r) if leads else None

        def facts(f: dict[str, Any]) -> None:
            breaches = f.setdefault("breaches", {})
            for fp in self.forecasts.values():
                if fp.breach_at is not None and (fp.breach_at - fp.ts).total_seconds() <= r.breach_horizon_s:
                    breaches[fp.sensor] = {
                        "sensor": fp.sensor,
                        "breach_at": fp.breach_at.isoformat(),
                        "lead_s": max((fp.breach_at - fp.ts).total_seconds(), 0.0),
                        "predicted": fp.predicted,
                        "lower": fp.lower,
                        "upper": fp.upper,
                        "limit": fp.limit,
                        "forecast_at": fp.ts.isoformat(),
                    }

        # sensors' forecasts interleave: the kind's time is the newest forecast of any sensor
        newest = max(fp.ts for fp in self.forecasts.values())
        return self._observe("forecast_breach", newest, level, sev, facts)

    def _desync(self, rec: DesyncEscalation) -> list[Alert]:
        """A twin desynced longer than its ``max_desync_time_s``: major, with the reconciler's detail."""

        def facts(f: dict[str, Any]) -> None:
            f["desync"] = rec.detail

        return self._observe("desync", rec.ts, ABOVE, "major", facts)

    # ------------------------------------------------------------------ lifecycle
    def _observe(self, kind: Kind, ts: datetime, level: int, sev: Severity | None, facts) -> list[Alert]:
        ks = self.kinds.setdefault(kind, _KindState())
        if ks.last_ts is not None and ts < ks.last_ts:
            self.late_ignored += 1
            return []
        ks.last_ts = ts
        timing = self.rules.timing(kind)
        live = ks.live
        if live is None:
            if self.maintenance:
                if level == ABOVE:
                    self.suppressed += 1
                ks.reset_run()
                return []
            if level == BELOW:
                ks.reset_run()
                return []
            if level == BAND and ks.onset is None:
                return []
            if ks.onset is None:
                ks.onset = ts
            ks.samples += 1
            facts(ks.facts)
            if sev is not None:
                ks.severity = _sev_max(ks.severity, sev)
            if level == ABOVE and (ts - ks.onset).total_seconds() >= timing.min_duration_s:
                if kind in self.out_of_service:  # out of service: the alarm is not raised
                    self.suppressed += 1
                    ks.reset_run()
                    return []
                return self._open(kind, ks, ts)
            return []
        # an alert is live
        ks.samples += 1
        if level == BELOW:
            ks.clear_since = ks.clear_since or ts
            cool = timing.cool_down_s * (self.rules.flap_cool_down_factor if live.flapping else 1.0)
            if (ts - ks.clear_since).total_seconds() >= cool:
                if self.rules.latch_unacknowledged and live.state == "open":  # RTNUN until acknowledged
                    if live.condition == "cleared":
                        return []
                    live.condition = "cleared"
                    return [self._version(kind, ks, ts, "cleared")]
                return [self._close(kind, ks, ts, "auto", event="resolved")]
            return []
        ks.clear_since = None
        if level == ABOVE and live.condition == "cleared":
            live.condition = "active"
            return [self._version(kind, ks, ts, "reactivated")]
        facts(ks.facts)
        if sev is not None and SEVERITIES.index(sev) > SEVERITIES.index(ks.severity):
            ks.severity = sev
            new = _sev_max(live.severity, sev)
            if new != live.severity:
                live.severity = new
                return [self._version(kind, ks, ts, "severity")]
        return []

    def _open(self, kind: Kind, ks: _KindState, ts: datetime) -> list[Alert]:
        r = self.rules
        window = timedelta(seconds=r.flap_window_s)
        recent = [t for t in ks.openings if ts - t <= window]
        ks.openings.append(ts)
        ks.live = _Open(
            alert_id=alert_id_for(self.twin_id, kind, ts),
            opened_at=ts,
            severity=ks.severity,
            flapping=len(recent) + 1 >= r.flap_count,
            suppressed_by=self._suppression(),
            annunciated_at=ts,
        )
        ks.clear_since = None
        out = [self._version(kind, ks, ts, "opened", bump=False)]
        action = self.pending_actions.pop(ks.live.alert_id, None)
        if action is not None:
            out += self._action(action)
        return out

    def _close(self, kind: Kind, ks: _KindState, ts: datetime, by: str, event: str) -> Alert:
        live = ks.live
        assert live is not None
        live.state = "resolved"
        live.shelved_until, live.shelved_by, live.shelve_reason = None, None, ""
        alert = self._version(kind, ks, ts, event, resolved=(ts, by))
        self.closed_ids.append(live.alert_id)
        ks.live = None
        ks.clear_since = None
        ks.reset_run()
        return alert

    def _timers(self) -> list[Alert]:
        """Shelf expiry, standing-alarm detection, escalation (at the current clock)."""
        if self.now is None:
            return []
        out: list[Alert] = []
        standing = self.rules.standing_after_s
        for kind, ks in self.kinds.items():
            live = ks.live
            if live is not None and live.shelved_until is not None and self.now >= live.shelved_until:
                out.append(self._unshelve(kind, ks, self.now, "expiry"))  # type: ignore[arg-type]
            if (
                live is not None
                and not live.standing
                and live.condition == "active"
                and standing > 0
                and (self.now - live.opened_at).total_seconds() >= standing
            ):
                live.standing = True
                out.append(self._version(kind, ks, self.now, "standing"))  # type: ignore[arg-type]
        return out + self._escalate()

    def _unshelve(self, kind: Kind, ks: _KindState, ts: datetime, by: str) -> Alert:
        """End shelving; an alarm still active is annunciated again (unacknowledged)."""
        live = ks.live
        assert live is not None
        live.shelved_until, live.shelved_by, live.shelve_reason = None, None, ""
        if live.condition == "active" and live.annunciated:
            live.state, live.acked_at, live.acked_by = "open", None, None
            live.reopened += 1
            live.annunciated_at, live.base_level = ts, live.escalation_level
        return self._version(kind, ks, ts, "unshelved", actor=by)

    def _escalate(self) -> list[Alert]:
        if self.maintenance or self.now is None:
            return []
        out = []
        period = self.rules.escalate_after_s
        for kind, ks in self.kinds.items():
            live = ks.live
            if live is None or live.state != "open" or period <= 0 or not live.annunciated:
                continue
            due = (live.escalation_level - live.base_level + 1) * period
            if (self.now - (live.annunciated_at or live.opened_at)).total_seconds() >= due:
                live.escalation_level += 1
                live.severity = _sev_up(live.severity)
                out.append(self._version(kind, ks, self.now, "escalated"))  # type: ignore[arg-type]
        return out

    def _action(self, act: AlertAction) -> list[Alert]:
        for kind, ks in self.kinds.items():
            live = ks.live
            if live is None or live.alert_id != act.alert_id:
                continue
            return self._act_on(kind, ks, act)  # type: ignore[arg-type]
        if act.action == "in_service" and act.alert_id in self.out_of_service.values():
            self.out_of_service = {k: a for k, a in self.out_of_service.items() if a != act.alert_id}
            return []
        if act.alert_id not in self.closed_ids:
            # Not opened yet (a replay may deliver the action first): keep it for a while.
            self.pending_actions[act.alert_id] = act
            while len(self.pending_actions) > 64:
                self.pending_actions.pop(next(iter(self.pending_actions)))
                self.actions_expired += 1
        return []

    def _act_on(self, kind: Kind, ks: _KindState, act: AlertAction) -> list[Alert]:
        live = ks.live
        assert live is not None
        if act.action == "ack":
            if live.state != "open":
                return []
            if live.condition == "cleared":  # acknowledging a cleared alarm returns it to normal
                return [self._close(kind, ks, act.ts, act.by, event="resolved")]
            live.state = "acknowledged"
            live.acked_at, live.acked_by = act.ts, act.by
            return [self._version(kind, ks, act.ts, "acknowledged", actor=act.by)]
        if act.action == "resolve":
            return [self._close(kind, ks, act.ts, act.by, event="resolved")]
        if act.action == "shelve":
            limit = act.ts + timedelta(seconds=self.rules.max_shelve_s)
            until = min(act.until or limit, limit)
            if until <= act.ts:
                return []
            live.shelved_until, live.shelved_by, live.shelve_reason = until, act.by, act.note
            return [self._version(kind, ks, act.ts, "shelved", actor=act.by)]
        if act.action == "unshelve":
            return [self._unshelve(kind, ks, act.ts, act.by)] if live.shelved_until is not None else []
        if act.action == "out_of_service":
            if live.out_of_service:
                return []
            live.out_of_service = True
            self.out_of_service[kind] = live.alert_id
            return [self._version(kind, ks, act.ts, "out_of_service", actor=act.by)]
        # in_service
        self.out_of_service.pop(kind, None)
        if not live.out_of_service:
            return []
        live.out_of_service = False
        live.annunciated_at, live.base_level = act.ts, live.escalation_level
        return [self._version(kind, ks, act.ts, "in_service", actor=act.by)]

    def _expire_pending(self) -> None:
        if not self.pending_actions or self.now is None:
            return
        ttl = timedelta(seconds=self.rules.pending_action_ttl_s)
        for alert_id, act in list(self.pending_actions.items()):
            if self.now - act.ts > ttl:
                del self.pending_actions[alert_id]
                self.actions_expired += 1

    # ------------------------------------------------------------------ output
    def _version(
        self,
        kind: Kind,
        ks: _KindState,
        ts: datetime,
        event: str,
        *,
        bump: bool = True,
        resolved: tuple[datetime, str] | None = None,
        actor: str | None = None,
    ) -> Alert:
        live = ks.live
        assert live is not None
        if bump:
            live.version += 1
        evidence = self._evidence(kind, ks, ts)
        if actor:
            evidence["actor"] = actor
        return Alert(
            alert_id=live.alert_id,
            twin_id=self.twin_id,
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
            summary=self._summary(kind, evidence),
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

    def _evidence(self, kind: Kind, ks: _KindState, ts: datetime) -> dict[str, Any]:
        facts = {k: v for k, v in ks.facts.items() if not k.startswith("_")}
        if "breaches" in facts:
            facts["breaches"] = sorted(facts["breaches"].values(), key=lambda b: b["lead_s"])
        start = ks.onset or (ks.live.opened_at if ks.live else ts)
        ev: dict[str, Any] = {
            "window": {"start": start.isoformat(), "end": ts.isoformat()},
            "samples": ks.samples,
            **facts,
        }
        contrib = ks.facts.get("_contrib") or self.contributions
        if contrib:
            total = sum(contrib.values()) or 1.0
            top = sorted(contrib.items(), key=lambda kv: -kv[1])[: self.rules.top_sensors]
            ev["top_sensors"] = [{"sensor": s, "share": round(v / total, 4)} for s, v in top]
        if self.failure is not None:
            f = self.failure
            ev["time_to_failure_s"] = f.rul_s
            ev["predicted_failure_at"] = (f.ts + timedelta(seconds=f.rul_s)).isoformat()
            ev["failure_probability"] = f.failure_probability
            if f.uncertainty is not None:
                ev["rul_uncertainty"] = f.uncertainty
        return ev

    def _summary(self, kind: Kind, ev: dict[str, Any]) -> str:
        parts = [f"{self.twin_id}: {kind.replace('_', ' ')}"]
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


# Order of records with the same ts: a status change applies to the data at its time, an action
# comes after the data it reacts to.
_RANK: dict[type, int] = {
    TwinStatus: 0,
    ParentAlarm: 0,
    AnomalyScore: 1,
    FailurePrediction: 2,
    ForecastPoint: 3,
    DesyncEscalation: 4,
    AlertAction: 5,
}


@dataclass(slots=True)
class OrderedTwinAlerts:
    """:class:`TwinAlerts` behind an event-time reorder buffer (one per twin; picklable).

    ``push`` holds a record until the twin's newest data ``ts`` (model outputs and desync
    escalations; status changes and actions come from other clocks) is ``reorder_window_s`` past it and
    then applies held records in (ts, kind rank, arrival) order; ``flush`` applies all held
    records (end of input, or a twin that went quiet). A record older than the last applied one
    arrived too late for the window: it is applied at once (nothing is dropped) and counted
    in ``late_applied``.
    """

    alerts: TwinAlerts
    held: list = field(default_factory=list)  # heap of (ts, rank, arrival, record)
    arrivals: int = 0
    newest: datetime | None = None
    applied_until: datetime | None = None
    late_applied: int = 0

    @classmethod
    def new(cls, twin_id: str, rules: AlertRules) -> OrderedTwinAlerts:
        return cls(TwinAlerts(twin_id, rules))

    def push(self, rec: InputRecord) -> list[Alert]:
        """Take one record; returns the alert versions of the records it releases."""
        if self.applied_until is not None and rec.ts < self.applied_until:
            self.late_applied += 1
            return self.alerts.apply(rec)
        self.arrivals += 1
        heapq.heappush(self.held, (rec.ts, _RANK[type(rec)], self.arrivals, rec))
        from_data = not isinstance(rec, TwinStatus | AlertAction | ParentAlarm)
        if from_data and (self.newest is None or rec.ts > self.newest):
            self.newest = rec.ts  # the twin's data drive the clock, not people's or the CLI's clocks
        rules = self.alerts.rules
        until = self.newest - timedelta(seconds=rules.reorder_window_s) if self.newest else None
        out: list[Alert] = []
        while self.held and (
            (until is not None and self.held[0][0] <= until) or len(self.held) > rules.reorder_max_held
        ):
            out += self._release()
        return out

    def advance(self, ts: datetime) -> list[Alert]:
        """A clock tick without data: apply what is held, then move the twin's clock to ``ts``."""
        return self.flush() + self.alerts.advance(ts)

    def flush(self) -> list[Alert]:
        """Apply every held record in event-time order."""
        out: list[Alert] = []
        while self.held:
            out += self._release()
        return out

    def _release(self) -> list[Alert]:
        ts, _, _, rec = heapq.heappop(self.held)
        self.applied_until = ts
        return self.alerts.apply(rec)


def step(state: OrderedTwinAlerts | None, rec: InputRecord, rules: AlertRules) -> tuple[OrderedTwinAlerts, list[Alert]]:
    """Per-twin flow step: create the twin's state on first use, push one record."""
    if state is None:
        state = OrderedTwinAlerts.new(rec.twin_id, rules)
    return state, state.push(rec)
