"""Reconcile a twin's desired and reported state: strategies, hysteresis, commands, escalation.

Plain Python. Time is event time only: each input carries its time and the twin's clock is
the latest time seen, so every timeout (hold time, ack deadline, retry backoff, max desync
time) is deterministic and testable. ``Reconciler.apply(state, event)`` mutates the state
and returns what to publish (:data:`~operators.twin.transaction.Output`): a ``StateChange`` when
anything changed (the version grows by exactly one, :mod:`operators.twin.transaction`), ``Command``
records for ``twin.commands`` and ``DesyncEvent`` records for ``twin.desync``.
The rules are documented in docs/reconciliation.md.

>>> from datetime import datetime, UTC
>>> from operators.records.twin import DesiredUpdate
>>> from operators.twin.sync_strategy import TwinPolicy
>>> r = Reconciler(TwinPolicy.model_validate(
...     {"defaults": {"strategy": "digital_wins", "tolerance": 1.0, "hold_time_s": 0}}))
>>> st = TwinState("p1")
>>> t = datetime(2026, 1, 1, tzinfo=UTC)
>>> _ = r.apply(st, Reported(t, 1, "mqtt", {"speed": 100.0}))
>>> out = r.apply(st, DesiredEvent(DesiredUpdate("p1", {"speed": 120.0}), t))
>>> [type(o).__name__ for o in out], st.status.value, st.version, st.desired_version
(['StateChange', 'Command'], 'desynced', 2, 1)

Desired events reach the reconciler only through the gate (:mod:`operators.twin.desired_gate`), which
authenticates, authorises and checks ``expected_version`` against ``desired_version``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from operators.records.twin import AckEvent, Command, DesiredEvent, DesyncKind, Reported
from operators.twin.connectivity import OFFLINE, ONLINE, ONLINE_READING, UNREACHABLE, Connectivity, silence_reason
from operators.twin.consistency import consistency_score
from operators.twin.state import CommandState, CommandStatus, ParamSync, StateChange, Status, TwinState
from operators.twin.sync_strategy import (
    CONNECTIVITY_DEFAULTS,
    ConnectivityTimeouts,
    ParamRules,
    Strategy,
    TwinPolicy,
    TwinRules,
)
from operators.twin.transaction import Output, Transaction

BAD_QUALITY = 2


class Reconciler:
    """Applies events to twin states under a :class:`TwinPolicy` (rules resolved once per twin).

    The fleet-wide connectivity timeouts (``[twin]``; a policy type or twin may override them):
    ``offline_after_s``: a twin without a reading for that long goes offline (0: never by silence);
    ``offline_alert_after_s``: a twin offline for that long sends an ``offline`` event on ``twin.desync``."""

    def __init__(
        self,
        policy: TwinPolicy,
        offline_after_s: float = CONNECTIVITY_DEFAULTS["offline_after_s"],
        offline_alert_after_s: float = CONNECTIVITY_DEFAULTS["offline_alert_after_s"],
    ) -> None:
        self.policy = policy
        self._rules: dict[str, TwinRules] = {}
        self._fleet = ConnectivityTimeouts(offline_after_s=offline_after_s, offline_alert_after_s=offline_alert_after_s)

    def rules(self, twin_id: str) -> TwinRules:
        r = self._rules.get(twin_id)
        if r is None:
            r = self._rules[twin_id] = self.policy.rules_for(twin_id, self._fleet)
        return r

    # ------------------------------------------------------------------ entry points
    def apply(self, state: TwinState, event: Reported | DesiredEvent | AckEvent | datetime) -> list[Output]:
        """Apply one event (a ``datetime`` is a clock tick) and return what to publish."""
        rules = self.rules(state.twin_id)
        if isinstance(event, Reported):
            if (
                not state.params
                and state.mode == "normal"
                and state.status is Status.SYNCHRONIZED
                and event.quality < BAD_QUALITY
                and event.source not in rules.simulation_sources
                and state.connectivity.state == ONLINE
                # Partly unreachable: a good value of an unreachable sensor takes it off the list.
                and (not (lost := state.connectivity.unreachable) or lost.keys().isdisjoint(event.values))
            ):
                return _measured(state, rules, event)
            tx = Transaction(state, rules, "reported")
            self._on_reported(tx, event)
        else:
            if isinstance(event, DesiredEvent):
                tx = Transaction(state, rules, "desired")
                self._on_desired(tx, event)
            elif isinstance(event, AckEvent):
                tx = Transaction(state, rules, "ack")
                self._on_ack(tx, event)
            else:
                tx = Transaction(state, rules, "clock")
                tx.advance(event)
            self._silence(tx)
        if state.clock is not None:
            self._evaluate(tx)
        return tx.finish()

    def next_due(self, state: TwinState) -> datetime | None:
        """The earliest event time at which the twin changes without new input, if any.

        Ack deadlines, retry times, hold-time expiries of a pending switch and the escalation time:
        the flow uses it to send a clock tick to a twin that has gone silent.
        """
        rules = self.rules(state.twin_id)
        due: list[datetime] = []
        for name, ps in state.params.items():
            cmd = ps.command
            if cmd is not None and cmd.status is CommandStatus.PENDING:
                due.append(cmd.deadline)
            elif cmd is not None and cmd.status is CommandStatus.RETRY_WAIT and cmd.retry_at is not None:
                due.append(cmd.retry_at)
            if ps.hyst.since is not None:
                due.append(ps.hyst.since + timedelta(seconds=rules.param(name).hold_time_s))
        if state.status is Status.DESYNCED and not state.escalated and state.desync_since is not None:
            due.append(state.desync_since + timedelta(seconds=rules.max_desync_time_s))
        conn = state.connectivity
        if conn.state == OFFLINE and not state.offline_escalated and conn.since is not None:
            due.append(conn.since + timedelta(seconds=rules.offline_alert_after_s))
        if rules.offline_after_s > 0 and conn.state == ONLINE and state.clock is not None:
            # The newest reading is the clock unless an event that was not a reading moved it since.
            heard = state.heard
            last = heard[1] if heard is not None and heard[0] == state.clock else state.clock
            due.append(last + timedelta(seconds=rules.offline_after_s))
        return min(due) if due else None

    def _silence(self, tx: Transaction) -> None:
        """An event that is not a reading: an online twin without a reading for its ``offline_after_s`` goes offline."""
        st, rules = tx.state, tx.rules
        if rules.offline_after_s <= 0 or st.connectivity.state != ONLINE or not st.reported or st.clock is None:
            return
        last = max(ts for _value, ts in st.reported.values())
        st.heard = (st.clock, last)
        if (st.clock - last).total_seconds() >= rules.offline_after_s:
            reason = silence_reason(rules.offline_after_s, rules.offline_after_key)
            _connect(tx, Connectivity(OFFLINE, last, reason, st.connectivity.unreachable))

    # ------------------------------------------------------------------ inputs
    def _on_reported(self, tx: Transaction, ev: Reported) -> None:
        st = tx.state
        tx.advance(ev.ts)
        if ev.source in tx.rules.simulation_sources:
            # What-if values: kept apart, never reported, never a new version of the twin.
            for name, value in ev.values.items():
                st.simulated[name] = (value, ev.ts)
            return
        if ev.quality >= BAD_QUALITY:
            if ev.quality == UNREACHABLE:  # the device (or some sensors) cannot be reached; other values count
                if ev.values:
                    tx.fields.update(_report(st, tx.rules, ev))
                _reach(tx, ev)
            return
        tx.fields.update(_report(st, tx.rules, ev))
        _reach(tx, ev)

    def _on_desired(self, tx: Transaction, ev: DesiredEvent) -> None:
        st, upd = tx.state, ev.update
        tx.advance(ev.at)
        tx.author, tx.reason, tx.request_id = upd.author, upd.reason, upd.request_id
        if upd.mode is not None and upd.mode != st.mode:
            tx.change("mode", st.mode, upd.mode)
            st.mode = upd.mode
            tx.desired_changed = True
        for name, value in upd.values.items():
            cur = st.desired.get(name)
            if cur is not None and cur[0] == value:
                continue
            tx.desired_changed = True
            tx.change(f"desired.{name}", None if cur is None else cur[0], value)
            st.desired[name] = (value, ev.at, upd.author)
            ps = st.params.get(name)
            if ps is None:
                ps = st.params[name] = ParamSync()
            self._new_desired(tx, name, ps, tx.rules.param(name), value, ev.at)

    def _new_desired(
        self, tx: Transaction, name: str, ps: ParamSync, pr: ParamRules, value: float, at: datetime
    ) -> None:
        st = tx.state
        rep = st.reported.get(name)
        if pr.strategy is Strategy.PHYSICAL_WINS:
            return  # evaluation makes desired follow reported
        if pr.strategy is Strategy.MERGE and rep is not None and rep[1] >= at:
            # Merge: the reported value is as new or newer (tie → reported wins).
            self._follow_reported(tx, name, ps, "merge: reported is newer")
            return
        deviation = None if rep is None else abs(rep[0] - value)
        if ps.hyst.force(deviation is None or deviation > pr.tolerance):
            tx.change(f"conflict.{name}", not ps.hyst.in_conflict, ps.hyst.in_conflict)
        if ps.command is not None and ps.command.status in (CommandStatus.PENDING, CommandStatus.RETRY_WAIT):
            tx.change(f"command.{name}", ps.command.label(), f"{ps.command.command_id}:superseded")
        ps.command = None
        ps.driving = deviation is None or deviation > 0

    def _on_ack(self, tx: Transaction, ev: AckEvent) -> None:
        st, ack = tx.state, ev.ack
        tx.advance(ev.at)
        name = ack.command_id.rsplit(":", 1)[-1]
        ps = st.params.get(name)
        cmd = None if ps is None else ps.command
        if ps is None or cmd is None or cmd.command_id != ack.command_id:
            return  # an ack of a superseded or unknown command: nothing to do
        if cmd.status not in (CommandStatus.PENDING, CommandStatus.RETRY_WAIT):
            return  # duplicate ack
        if ack.status == "superseded":
            return  # the bridge wrote a newer command for the parameter instead (a repeat of this one): its ack decides
        old = cmd.label()
        pr = tx.rules.param(name)
        if ack.status == "applied":
            cmd.status = CommandStatus.APPLIED
            cmd.acked_at = ack.applied_at or ev.at
            cmd.retry_at = None
            tx.change(f"command.{name}", old, cmd.label())
        elif ack.status == "rejected":
            cmd.status = CommandStatus.GIVEN_UP
            cmd.error = ack.error
            tx.change(f"command.{name}", old, cmd.label())
            tx.desync(
                "command_rejected",
                tx.next_version,
                parameter=name,
                command_id=cmd.command_id,
                value=cmd.value,
                error=ack.error,
            )
        else:
            self._failed(tx, name, ps, pr, ack.error or ack.status)

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, tx: Transaction) -> None:
        st, now = tx.state, tx.now
        for name, ps in st.params.items():
            pr = tx.rules.param(name)
            if pr.strategy is Strategy.PHYSICAL_WINS:
                self._follow_reported(tx, name, ps, None)
                synced = True
            else:
                rep = st.reported.get(name)
                deviation = None if rep is None else abs(rep[0] - st.desired[name][0])
                if ps.hyst.update(deviation, now, pr.tolerance, pr.clear_tolerance, pr.hold_time_s):
                    tx.change(f"conflict.{name}", not ps.hyst.in_conflict, ps.hyst.in_conflict)
                self._drive(tx, name, ps, pr)
                cmd = ps.command
                synced = not ps.hyst.in_conflict and (
                    not pr.critical or cmd is None or cmd.status is CommandStatus.APPLIED
                )
            if synced != ps.synced:
                ps.synced = synced
                tx.change(f"in_sync.{name}", not synced, synced)
                if synced:
                    ps.driving = False
                    reached = ps.hyst.switch_started or now
                    if pr.critical and ps.command is not None and ps.command.acked_at is not None:
                        reached = max(reached, ps.command.acked_at)
                    ps.reached_at = reached
        self._update_status(tx)
        st.consistency_score = consistency_score(st, tx.rules)

    def _drive(self, tx: Transaction, name: str, ps: ParamSync, pr: ParamRules) -> None:
        st, now = tx.state, tx.now
        # Commands wait while the device cannot be reached (sent when it is back online).
        can_send = st.mode == "normal" and st.connectivity.state != OFFLINE
        cmd = ps.command
        if cmd is not None and cmd.status is CommandStatus.PENDING and now >= cmd.deadline:
            if not pr.critical and not ps.hyst.in_conflict:
                # Eventual consistency: the device got there, only the ack is missing; no retry.
                old = cmd.label()
                cmd.status = CommandStatus.REACHED
                tx.change(f"command.{name}", old, cmd.label())
            else:
                self._failed(tx, name, ps, pr, "ack timeout")
        if cmd is not None and cmd.status is CommandStatus.RETRY_WAIT and can_send:
            assert cmd.retry_at is not None
            if now >= cmd.retry_at:
                self._issue(tx, name, ps, pr, cmd.attempt + 1)
        if ps.driving and ps.command is None and can_send:
            self._issue(tx, name, ps, pr, 1)
        cmd = ps.command
        if pr.strategy is Strategy.MERGE:
            gave_up = cmd is not None and cmd.status is CommandStatus.GIVEN_UP
            if gave_up or (not ps.driving and ps.hyst.in_conflict):
                if gave_up:
                    ps.command = None
                # Merge: the device did not follow, or it changed after converging → reported is newer.
                self._follow_reported(tx, name, ps, "merge: reported is newer")
        elif not ps.driving and ps.hyst.in_conflict:
            # digital_wins: the device drifted after converging → drive it back (a new episode).
            ps.driving = True
            ps.command = None
            if can_send:
                self._issue(tx, name, ps, pr, 1)

    def _issue(self, tx: Transaction, name: str, ps: ParamSync, pr: ParamRules, attempt: int) -> None:
        st, now = tx.state, tx.now
        value = st.desired[name][0]
        command_id = f"{st.twin_id}:{tx.next_version}:{name}"
        deadline = now + timedelta(seconds=pr.ack_timeout_s)
        old = None if ps.command is None else ps.command.label()
        ps.command = CommandState(command_id, value, attempt, now, deadline)
        tx.change(f"command.{name}", old, ps.command.label())
        tx.out.append(Command(command_id, st.twin_id, name, value, now, deadline))

    def _failed(self, tx: Transaction, name: str, ps: ParamSync, pr: ParamRules, error: str) -> None:
        cmd = ps.command
        assert cmd is not None
        old = cmd.label()
        cmd.error = error
        if cmd.attempt < pr.max_attempts:
            cmd.status = CommandStatus.RETRY_WAIT
            cmd.retry_at = tx.now + timedelta(seconds=pr.backoff_s(cmd.attempt))
        else:
            cmd.status = CommandStatus.GIVEN_UP
            tx.desync(
                "command_failed",
                tx.next_version,
                parameter=name,
                command_id=cmd.command_id,
                value=cmd.value,
                attempts=cmd.attempt,
                error=error,
            )
        tx.change(f"command.{name}", old, cmd.label())

    def _follow_reported(self, tx: Transaction, name: str, ps: ParamSync, why: str | None) -> None:
        st = tx.state
        rep = st.reported.get(name)
        if rep is not None and rep[0] != st.desired[name][0]:
            tx.change(f"desired.{name}", st.desired[name][0], rep[0])
            st.desired[name] = (rep[0], rep[1], why or "physical_wins")
            if why is not None:  # merge: the machine overrode a desired value (physical_wins only mirrors)
                tx.desired_changed = True
        ps.driving = False
        if ps.hyst.force(False):
            tx.change(f"conflict.{name}", True, False)

    def _update_status(self, tx: Transaction) -> None:
        st, now = tx.state, tx.now
        if st.mode != "normal":
            new = Status(st.mode)
        elif st.connectivity.state == OFFLINE:
            new = Status.OFFLINE
        else:
            new = Status.SYNCHRONIZED if all(p.synced for p in st.params.values()) else Status.DESYNCED
        old = st.status
        if new != old:
            tx.change("status", old.value, new.value)
            st.status = new
            if new is Status.DESYNCED:
                st.desync_since = now
                st.escalated = False
            elif new is Status.SYNCHRONIZED:
                if old is Status.DESYNCED and st.desync_since is not None:
                    reached = max((p.reached_at for p in st.params.values() if p.reached_at), default=now)
                    latency = max((reached - st.desync_since).total_seconds() * 1000.0, 0.0)
                    tx.change("sync_latency_ms", st.sync_latency_ms, latency)
                    st.sync_latency_ms = latency
                tx.change("last_sync_time", st.last_sync_time, now)
                st.last_sync_time = now
                if old is Status.DESYNCED and st.escalated and st.desync_since is not None:
                    _escalation(tx, "resynced", st.desync_since)  # the alerts flow clears its desync alert
                elif old is Status.OFFLINE and st.escalated:  # desynced, then offline, now back in sync
                    _escalation(tx, "resynced", now)
                st.desync_since = None
            else:
                st.desync_since = None  # maintenance/simulating: the desync clock restarts afterwards
        conn = st.connectivity
        if conn.state == OFFLINE:
            if (
                not st.offline_escalated
                and conn.since is not None
                and (now - conn.since).total_seconds() >= tx.rules.offline_alert_after_s
            ):
                st.offline_escalated = True
                tx.change("offline_escalated", False, True)
                tx.desync("offline", tx.next_version, since=conn.since, duration_s=(now - conn.since).total_seconds(),
                          reason=conn.reason)  # fmt: skip
        elif st.offline_escalated:
            st.offline_escalated = False
            tx.change("offline_escalated", True, False)
            tx.desync("online", tx.next_version, since=conn.since, reason=conn.reason)
        if (
            st.status is Status.DESYNCED
            and not st.escalated
            and st.desync_since is not None
            and (now - st.desync_since).total_seconds() >= tx.rules.max_desync_time_s
        ):
            _escalation(
                tx,
                "desync",
                st.desync_since,
                max_desync_time_s=tx.rules.max_desync_time_s,
                parameters=sorted(k for k, p in st.params.items() if not p.synced),
            )


def _report(st: TwinState, rules: TwinRules, ev: Reported) -> dict[str, list[Any]]:
    """Take a reading's values into ``st.reported``; returns the fields that changed (``reported.<name>``:
    [old, new]). A value within the deadband of the versioned one only refreshes its timestamp."""
    changed: dict[str, list[Any]] = {}
    reported, params, ts, param = st.reported, st.params, ev.ts, rules.param
    for name, value in ev.values.items():
        cur = reported.get(name)
        if cur is None:
            changed[f"reported.{name}"] = [None, value]
        else:
            old, at = cur
            if ts < at:
                continue  # older than what we hold: the newer source timestamp wins
            pr = param(name)
            # Measurements: the larger of the absolute and the relative deadband; setpoints (a
            # desired value exists): the absolute one only, reconciliation needs the exact value.
            band = pr.deadband
            if name not in params:
                relative = pr.deadband_pct * 0.01 * abs(old)
                if relative > band:  # max(band, relative), without the call
                    band = relative
            if abs(value - old) <= band:
                reported[name] = (old, ts)
                continue
            changed[f"reported.{name}"] = [old, value]
        reported[name] = (value, ts)
    return changed


def _measured(st: TwinState, rules: TwinRules, ev: Reported) -> list[Output]:
    """:meth:`Reconciler.apply` of a good reading to a twin with nothing to reconcile (no desired
    values, mode normal, synchronized), without the transaction: its evaluation changes nothing (no
    parameter to judge or drive, status stays synchronized, consistency 1), so the outputs are the
    reported values' version alone, the same as through the transaction."""
    if st.clock is None or ev.ts > st.clock:
        st.clock = ev.ts
    st.consistency_score = 1.0
    fields = _report(st, rules, ev)
    if not fields:
        return []
    st.version += 1
    return [StateChange.of(st, {"cause": "reported", "fields": fields})]


def _reach(tx: Transaction, ev: Reported) -> None:
    """The twin's connectivity after a reading (docs/reconciliation.md, "Connectivity").

    Good values take their sensors off the unreachable list, ``ev.lost`` puts its sensors on it. The
    twin is offline when the event names no sensor (a death, a last will: the whole device) or when
    every sensor it has reported is unreachable; otherwise a good value makes it online (the device
    answers), and an event with unreachable sensors only leaves the state as it is."""
    st = tx.state
    conn = st.connectivity
    if ev.quality == UNREACHABLE and not ev.lost:  # the whole device
        if conn.state != OFFLINE:
            _connect(tx, Connectivity(OFFLINE, ev.ts, ev.reason, conn.unreachable))
        return
    lost = conn.unreachable
    if lost and not lost.keys().isdisjoint(ev.values):
        lost = {k: since for k, since in lost.items() if k not in ev.values}
    if new := [s for s in ev.lost if s not in lost]:
        lost = {**lost, **dict.fromkeys(new, ev.ts)}
    if lost and all(k in lost for k in st.reported if k != ONLINE_READING):  # every sensor it has
        if conn.state != OFFLINE:
            conn = Connectivity(OFFLINE, ev.ts, ev.reason, lost)
    elif ev.values and conn.state != ONLINE:
        conn = Connectivity(ONLINE, ev.ts, f"{ev.source} reading", lost)
    if conn is not st.connectivity or lost is not conn.unreachable:
        _connect(tx, Connectivity(conn.state, conn.since, conn.reason, lost))


def _connect(tx: Transaction, conn: Connectivity) -> None:
    """The twin's connectivity changes to ``conn`` (the version's audit shows ``connectivity`` when its
    state changes and ``unreachable`` [old, new sensor lists] when its unreachable sensors do)."""
    st = tx.state
    old = st.connectivity
    if conn.state != old.state:
        tx.change("connectivity", old.state, conn.state)
    if conn.unreachable.keys() != old.unreachable.keys():
        tx.change("unreachable", sorted(old.unreachable), sorted(conn.unreachable))
    st.set_connectivity(conn)


def _escalation(tx: Transaction, kind: DesyncKind, since: datetime, **detail: Any) -> None:
    """A desync escalation starts (``desync``) or ends (``resynced``): the twin's ``escalated`` flag
    and the ``twin.desync`` event, with since when and how long the twin has been desynced."""
    st = tx.state
    st.escalated = kind == "desync"
    tx.change("escalated", not st.escalated, st.escalated)
    tx.desync(kind, tx.next_version, since=since, duration_s=(tx.now - since).total_seconds(), **detail)
