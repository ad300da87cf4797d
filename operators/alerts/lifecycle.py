"""The alert lifecycle of one twin: conditions in, alert versions out (ISA-18.2 alarm states).

Plain Python with an event-time clock: one :class:`TwinAlerts` per twin holds the state and
``apply(record)`` returns the new alert versions (the flow puts it behind the event-time order of
:mod:`operators.alerts.ordering`). The clock is the newest ``ts`` seen in the twin's data inputs,
so replays and tests behave exactly as live runs.

Per twin and kind (the dedup key) there is at most one alert that is not resolved:

* a **condition** per kind (:mod:`operators.alerts.conditions`) is above (opens), below (clears)
  or in the hysteresis band between, judged per **source** (the model whose records they are,
  :func:`~operators.records.alerts.source_of`): one source's records never reset another's run;
* one source's condition must stay above for ``min_duration_s`` to **open** the kind's alert, and
  every source's below for ``cool_down_s`` to **resolve** it (automatically, ``resolved_by='auto'``);
  in the band nothing changes; the alert names the sources that raised it (unless only the
  built-in models did);
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
  is **annunciated again**: unacknowledged, ``reopened`` + 1. The expiry is a time on people's (wall)
  clock, so it is judged on the twin's **wall clock**, ``wall``: the newest wall time its records
  were made at (the Kafka timestamps the flow passes to :meth:`TwinAlerts.apply`), not on its data
  clock, which may lag (a backlog, a late device) or run ahead. Records carry it: a replay expires
  the shelf at the same record as the live run. Without wall times (plain records) the data clock serves.
* **suppressed by design**: while the twin is in maintenance (alerts open before keep their
  record, marked ``suppressed_by='maintenance'``) or while a parent asset has an active alarm
  (:class:`ParentAlarm`; the child's alarms open suppressed, ``suppressed_by='parent:<id>'``).
* **out of service**: an alarm (twin × kind) taken out of service by a person opens nothing and
  escalates nothing until returned to service.
* **chattering**: the flapping detection above; **standing**: active longer than ``standing_after_s``.

Each version is explained (evidence, summary): :mod:`operators.alerts.explanation`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from operators.alerts import conditions
from operators.alerts.conditions import ABOVE, BAND, BELOW, Observation, max_severity, next_severity
from operators.alerts.episode import KindState, LiveAlert, alert_id_for
from operators.alerts.explanation import alert_version, evidence
from operators.alerts.rules import AlertRules
from operators.pickled import loads_shorter_layouts
from operators.records.alerts import (
    BUILTIN_SOURCE,
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
    TwinStatus,
    source_of,
)


@loads_shorter_layouts
@dataclass(slots=True)
class TwinAlerts:
    """All alert state of one twin; picklable (Bytewax snapshots it for recovery)."""

    twin_id: str
    rules: AlertRules
    now: datetime | None = None
    maintenance: bool = False
    kinds: dict[str, KindState] = field(default_factory=dict)
    contributions: dict[str, float] = field(default_factory=dict)  # latest anomaly contributions
    failure: FailurePrediction | None = None  # latest failure prediction
    forecasts: dict[str, ForecastPoint] = field(default_factory=dict)  # the built-in models': latest per sensor
    pending_actions: dict[str, AlertAction] = field(default_factory=dict)
    closed_ids: deque = field(default_factory=lambda: deque(maxlen=256))
    late_ignored: int = 0
    suppressed: int = 0
    actions_expired: int = 0
    parents: dict[str, str] = field(default_factory=dict)  # parent twin id → its active alert id
    out_of_service: dict[str, str] = field(default_factory=dict)  # kind → alert id it was taken with
    model_forecasts: dict[str, dict[str, ForecastPoint]] = field(default_factory=dict)  # other sources'
    wall: datetime | None = None  # newest wall time of the records applied (their Kafka timestamps)

    # ------------------------------------------------------------------ entry point
    def apply(self, rec: InputRecord, wall: datetime | None = None) -> list[Alert]:
        """Feed one record (``wall``: when it was made on the wall clock, its Kafka timestamp); returns
        the alert versions it caused (often none)."""
        if wall is not None and (self.wall is None or wall > self.wall):
            self.wall = wall
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
            if rec.contributions:
                self.contributions = dict(rec.contributions)
            source = source_of(rec.model)
            out += self._observe(conditions.anomaly(rec, self.rules), source)
            if rec.health is not None:
                out += self._observe(conditions.condition(rec, self.rules), source)
            if rec.sensor_faults or self._tracking("sensor_fault"):
                out += self._observe(conditions.sensor_fault(rec), source)
        elif isinstance(rec, FailurePrediction):
            self.failure = rec
            out += self._observe(conditions.failure(rec, self.rules), source_of(rec.model))
        elif isinstance(rec, ForecastPoint):
            out += self._forecast(rec)
        elif isinstance(rec, DesyncEscalation):
            out += self._observe(conditions.desync(rec), BUILTIN_SOURCE)
        out += self._timers()
        return out

    def advance(self, ts: datetime, wall: datetime | None = None) -> list[Alert]:
        """Move the data clock to ``ts`` and the wall clock to ``wall`` without data (a twin gone
        quiet): shelf expiry, standing, escalation."""
        moved = False
        if wall is not None and (self.wall is None or wall > self.wall):
            self.wall, moved = wall, True
        if self.now is None or ts > self.now:
            self.now, moved = ts, True
            self._expire_pending()
        return self._timers() if moved else []

    def wall_clock(self) -> datetime | None:
        """The clock shelf expiries are judged on: the wall clock, or the data clock without wall times."""
        return self.wall if self.wall is not None else self.now

    def next_due(self) -> datetime | None:
        """The earliest time of :meth:`wall_clock` a timer (a shelf's expiry) needs, if any."""
        dues = [ks.live.shelved_until for ks in self.kinds.values() if ks.live and ks.live.shelved_until]
        return min(dues, default=None)

    def _tracking(self, kind: Kind) -> bool:
        """Whether ``kind`` has a live alert or a run above in progress."""
        ks = self.kinds.get(kind)
        return ks is not None and (ks.live is not None or ks.onset is not None)

    def _forecast(self, rec: ForecastPoint) -> list[Alert]:
        """A forecast point: the breach condition over the latest forecast of each of its source's sensors."""
        source = source_of(rec.model)
        if source == BUILTIN_SOURCE:
            forecasts = self.forecasts
        else:
            forecasts = self.model_forecasts.get(source) or self.model_forecasts.setdefault(source, {})
        prev = forecasts.get(rec.sensor)
        if prev is not None and rec.ts < prev.ts:
            self.late_ignored += 1
            return []
        forecasts[rec.sensor] = rec
        return self._observe(conditions.forecast_breach(forecasts, self.rules), source)

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

    # ------------------------------------------------------------------ lifecycle
    def _observe(self, obs: Observation, source: str) -> list[Alert]:
        """Track one sample of a kind's condition from ``source``: open, clear, resolve or raise the
        severity. The sample moves its source's run only; the kind's alert opens when one source has
        been above for ``min_duration_s`` and clears when every source is below."""
        kind, ts, level, sev, facts = obs.kind, obs.ts, obs.level, obs.severity, obs.facts
        ks = self.kinds.get(kind)
        if ks is None:  # (not setdefault: that would build a KindState per sample)
            ks = self.kinds[kind] = KindState()
        run = ks.source(source)
        if run.last_ts is not None and ts < run.last_ts:
            self.late_ignored += 1
            return []
        run.last_ts, run.level = ts, level
        if ks.last_ts is None or ts > ks.last_ts:
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
                run.onset = None
                if not ks.in_run():  # (another source's run goes on: its evidence stays)
                    ks.reset_run()
                return []
            if level == BAND and run.onset is None:
                return []
            if run.onset is None:
                run.onset = ts
            if ks.onset is None:
                ks.onset = ts
            ks.samples += 1
            facts(ks.facts)
            if sev is not None:
                ks.severity = max_severity(ks.severity, sev)
            if level == ABOVE and (ts - run.onset).total_seconds() >= timing.min_duration_s:
                if kind in self.out_of_service:  # out of service: the alarm is not raised
                    self.suppressed += 1
                    ks.reset_run()
                    return []
                return self._open(kind, ks, ts, source)
            return []
        # an alert is live: its condition is its sources' (above when one is, below when all are)
        ks.samples += 1
        if level == ABOVE:
            live.raise_by(source)
        combined = ks.level()  # (one source: the sample's level)
        if combined == BELOW:
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
        if combined == ABOVE and live.condition == "cleared":
            live.condition = "active"
            return [self._version(kind, ks, ts, "reactivated")]
        if level == BELOW:  # another source holds the condition: this sample adds no evidence
            return []
        facts(ks.facts)
        if sev is not None and SEVERITIES.index(sev) > SEVERITIES.index(ks.severity):
            ks.severity = sev
            new = max_severity(live.severity, sev)
            if new != live.severity:
                live.severity = new
                return [self._version(kind, ks, ts, "severity")]
        return []

    def _open(self, kind: Kind, ks: KindState, ts: datetime, source: str) -> list[Alert]:
        r = self.rules
        window = timedelta(seconds=r.flap_window_s)
        recent = [t for t in ks.openings if ts - t <= window]
        ks.openings.append(ts)
        ks.live = LiveAlert(
            alert_id=alert_id_for(self.twin_id, kind, ts),
            opened_at=ts,
            severity=ks.severity,
            flapping=len(recent) + 1 >= r.flap_count,
            suppressed_by=self._suppression(),
            annunciated_at=ts,
            raised_by=[source],
        )
        ks.clear_since = None
        out = [self._version(kind, ks, ts, "opened", bump=False)]
        action = self.pending_actions.pop(ks.live.alert_id, None)
        if action is not None:
            out += self._action(action)
        return out

    def _close(self, kind: Kind, ks: KindState, ts: datetime, by: str, event: str) -> Alert:
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
        wall = self.wall_clock()
        for kind, ks in self.kinds.items():
            live = ks.live
            if live is not None and live.shelved_until is not None and wall is not None and wall >= live.shelved_until:
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

    def _unshelve(self, kind: Kind, ks: KindState, ts: datetime, by: str) -> Alert:
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
                live.severity = next_severity(live.severity)
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

    def _act_on(self, kind: Kind, ks: KindState, act: AlertAction) -> list[Alert]:
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
        ks: KindState,
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
        ev = evidence(ks, ts, self.contributions, self.failure, self.rules.top_sensors)
        if actor:
            ev["actor"] = actor
        return alert_version(self.twin_id, kind, live, ts, event, ev, resolved)
