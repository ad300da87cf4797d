"""The gate every desired request passes inside the twin flow, before it can change anything.

For each ``twin.desired`` record of a twin, in order, :meth:`DesiredGate.judge`:

1. looks the record and its request id up (:meth:`DesiredGate.recall` fetches a twin's whole polled
   batch in one query; verdicts not committed yet count too): the same Kafka record decided before
   (a replay after a restart) gets the *same* verdict again and nothing new is recorded;
2. otherwise decides (:func:`decide`): signature, subject and freshness
   (:mod:`operators.security.request_auth`) first — so the audit names whoever really signed —
   then a request id already decided in another record, earlier in the same batch included (a
   replayed request, denied; only authenticated verdicts claim an id, so a forged record cannot make
   a real request a "replay"), unknown twin, the attribute policy
   (:mod:`operators.security.authorization`), unknown parameters, ``physical_wins`` parameters (the
   device owns them), and the ``expected_version`` against the twin's desired version;
3. keeps the verdict: :meth:`DesiredGate.commit` records a polled batch's verdicts together, in the
   order judged (the hash-chained audit and the refusals, one transaction), and the flow forwards
   that batch's outputs only after it returns: an allowed change reaches ``twin.commands`` only
   after its audit row is committed.

Plain Python: the store is injected (:class:`connectors.desired_gate.PostgresDecisionStore` in
the flow, a dict in tests).

>>> from datetime import UTC, datetime
>>> from operators.security.authorization import Policy
>>> from operators.security.request_auth import Subjects, new_private_key, public_key_text, sign
>>> from operators.twin.sync_strategy import TwinPolicy
>>> from operators.records.twin import DesiredEvent, DesiredUpdate
>>> from operators.twin.state import TwinState
>>> key = new_private_key()
>>> subjects = Subjects.from_dict({"subject": {"ann": {"roles": "operator", "public_keys": [public_key_text(key)]}}})
>>> policy = Policy.from_dict({"rule": [{"name": "ops", "subject": {"roles": "operator"},
...                                      "parameters": {"speed": {"min": 0, "max": 3000}}}]})
>>> tp = TwinPolicy.model_validate({"defaults": {"strategy": "digital_wins"}})
>>> gate = DesiredGate(GateConfig(subjects, policy, None, tp.type_of), MemoryStore())
>>> now = datetime(2026, 11, 25, 8, tzinfo=UTC)
>>> st = TwinState("p1", version=7, reported={"speed": (1000.0, now)})
>>> req = {"twin_id": "p1", "values": {"speed": 1200.0}, "request_id": "req-0001",
...        "issued_at": now.isoformat(), "subject": "ann", "expected_version": 0}
>>> signed, sig = sign(req, key)
>>> ev = DesiredEvent(DesiredUpdate("p1", {"speed": 1200.0}, expected_version=0, issued_at=now,
...                   request_id="req-0001", subject="ann"), now, signed, sig, ("twin.desired", 0, 5))
>>> v = gate.judge(st, ev, tp.rules_for("p1"), now)
>>> v.allowed, v.actor, v.reason
(True, 'ann', 'allowed')
>>> again = DesiredEvent(ev.update, now, signed, sig, ("twin.desired", 0, 9))  # the same request re-sent
>>> gate.judge(st, again, tp.rules_for("p1"), now).reason    # in the same batch: still a replay
'replayed_request'
>>> gate.commit(), len(gate.store.log), gate.store.commits   # both verdicts recorded together
(2, 2, 1)
>>> forged = DesiredEvent(ev.update, now, signed.replace(b"1200", b"3000"), sig, ("twin.desired", 0, 10))
>>> v = gate.judge(st, forged, tp.rules_for("p1"), now)   # a tampered copy: not ann's, whatever it claims
>>> v.reason, v.detail.startswith("the signature does not verify")
('bad_signature', True)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from operators.records.twin import DesiredEvent
from operators.security.authorization import Policy
from operators.security.request_auth import AuthReason, Freshness, Subjects, authenticate
from operators.telemetry.registry import TwinRegistry
from operators.twin.state import TwinState
from operators.twin.sync_strategy import Strategy, TwinRules


class GateReason:
    """Reasons of a denial decided by the gate itself (the policy's are in operators.security.authorization)."""

    UNKNOWN_TWIN = "unknown_twin"
    UNKNOWN_PARAMETER = "unknown_parameter"
    PHYSICAL_WINS = "physical_wins"
    STALE_VERSION = "stale_version"
    REPLAYED = "replayed_request"
    NO_POLICY = "no_policy"
    NO_REQUEST_ID = "no_request_id"


# Verdicts on records whose signer is not established: they never claim a request id (a forged
# record with a real request's id must not turn that request into a "replay").
UNAUTHENTICATED = frozenset(
    {AuthReason.UNSIGNED, AuthReason.NO_SUBJECTS, AuthReason.UNKNOWN_SUBJECT, AuthReason.BAD_SIGNATURE}
)


@dataclass(frozen=True)
class Verdict:
    """The gate's decision on one request, with what the audit trail records about it."""

    request_id: str
    twin_id: str
    actor: str
    allowed: bool
    reason: str
    detail: str
    via: str | None = None
    # The audit entry: the desired values (and mode) before and requested, and the desired version.
    old: dict[str, Any] = field(default_factory=dict)
    new: dict[str, Any] = field(default_factory=dict)
    desired_version: int = 0
    position: tuple[str, int, int] | None = None
    # True: this Kafka record was decided before (a replay after a restart); nothing new recorded.
    repeated: bool = False

    @property
    def decision(self) -> str:
        return "allow" if self.allowed else "deny"


Position = tuple[str, int, int]
# What a store recalls: verdicts by Kafka position, and the first claim of each request id.
Recalled = tuple[dict[Position, Verdict], dict[str, Verdict]]


class DecisionStore(Protocol):
    """Where verdicts are kept (committed before ``record`` returns).

    ``recall`` returns the verdicts recorded for these Kafka records (``positions``) and, for each of
    ``request_ids``, the first verdict recorded for it whose reason is not in :data:`UNAUTHENTICATED`."""

    def recall(self, request_ids: Collection[str], positions: Collection[Position]) -> Recalled: ...

    def record(self, verdicts: Sequence[Verdict]) -> None: ...

    def resume_position(self, twin_id: str, topic: str, desired_version: int) -> Position | None:
        """The (topic, partition, offset) of ``twin_id``'s newest allowed verdict on ``topic`` decided
        below ``desired_version``: the last request a state at that desired version includes."""
        ...


class MemoryStore:
    """A :class:`DecisionStore` in dicts (tests, doctests)."""

    def __init__(self) -> None:
        self.by_position: dict[Any, Verdict] = {}
        self.by_request: dict[str, Verdict] = {}
        self.log: list[Verdict] = []
        self.commits = 0  # calls of ``record`` (transactions)

    def recall(self, request_ids: Collection[str], positions: Collection[Position]) -> Recalled:
        by_position = {p: self.by_position[p] for p in positions if p in self.by_position}
        return by_position, {r: self.by_request[r] for r in request_ids if r in self.by_request}

    def record(self, verdicts: Sequence[Verdict]) -> None:
        for verdict in verdicts:
            self.by_position.setdefault(verdict.position, verdict)
            if verdict.reason not in UNAUTHENTICATED:
                self.by_request.setdefault(verdict.request_id, verdict)
            self.log.append(verdict)
        self.commits += 1

    def resume_position(self, twin_id: str, topic: str, desired_version: int) -> Position | None:
        mine = [
            v.position
            for v in self.log
            if v.twin_id == twin_id and v.position and v.position[0] == topic
            and v.allowed and v.desired_version < desired_version
        ]  # fmt: skip
        return mine[-1] if mine else None


@dataclass(frozen=True)
class GateConfig:
    """What the gate decides with. ``subjects`` and ``policy`` may be callables returning the current
    ones (the flow reloads the files when they change, so adding a subject needs no restart)."""

    subjects: Subjects | Callable[[], Subjects | None] | None
    policy: Policy | Callable[[], Policy | None] | None
    registry: TwinRegistry | None
    twin_type: Callable[[str], str | None]  # the twin's type from [twin.policy] (no registry)
    freshness: Freshness = field(default_factory=Freshness)

    def current(self) -> tuple[Subjects | None, Policy | None]:
        subjects = self.subjects() if callable(self.subjects) else self.subjects
        policy = self.policy() if callable(self.policy) else self.policy
        return subjects, policy


def request_id_of(ev: DesiredEvent) -> str:
    """The request's id; an unsigned record without one is named by its Kafka position."""
    if ev.update.request_id:
        return ev.update.request_id
    if ev.position is not None:
        topic, partition, offset = ev.position
        return f"unsigned:{topic}:{partition}:{offset}"
    return f"unsigned:{ev.update.twin_id}:{ev.at.isoformat()}"


def twin_attrs(config: GateConfig, state: TwinState) -> dict[str, Any] | None:
    """The twin's attributes for the policy; None when the twin is unknown.

    With a registry: its entry (unknown when not listed). Without: ``type`` from
    ``[twin.policy]``, and a twin that never reported anything is unknown.
    """
    if config.registry is None and state.version == 0:
        return None
    return policy_attrs(state.twin_id, config.registry, config.twin_type)


def policy_attrs(
    twin_id: str, registry: TwinRegistry | None, twin_type: Callable[[str], str | None]
) -> dict[str, Any] | None:
    """The attributes the policy sees of a twin that exists: its registry entry (None: not listed), or
    without a registry its ``type`` from ``[twin.policy]`` (also for alert actions, twinflow.alarms)."""
    if registry is not None:
        attrs = registry.attrs(twin_id)
        return None if attrs is None else {"id": twin_id, **attrs}
    kind = twin_type(twin_id)
    return {"id": twin_id, **({"type": kind} if kind else {})}


def decide(
    config: GateConfig,
    state: TwinState,
    ev: DesiredEvent,
    rules: TwinRules,
    now: datetime,
    replay_of: Verdict | None = None,
) -> tuple[bool, str, str, str, str | None]:
    """(allowed, reason, detail, actor, via) for a Kafka record seen for the first time; ``replay_of``:
    the verdict already recorded for its request id in another record."""
    upd = ev.update
    subjects, policy = config.current()
    who = authenticate(
        ev.signed, ev.signature, upd.subject, upd.on_behalf_of, upd.issued_at, subjects, config.freshness, now
    )
    if not who.ok:
        return False, str(who.reason), who.detail, who.actor, who.via
    actor, via = who.actor, who.via

    def deny(reason: str, detail: str) -> tuple[bool, str, str, str, str | None]:
        return False, reason, detail, actor, via

    if not upd.request_id:
        return deny(GateReason.NO_REQUEST_ID, "a signed request needs a request_id (replay protection)")
    if replay_of is not None:
        return deny(
            GateReason.REPLAYED,
            f"request {upd.request_id} was already decided ({replay_of.decision}, Kafka record "
            f"{_where(replay_of.position)}); a copy is never applied again — send a new request",
        )
    attrs = twin_attrs(config, state)
    if attrs is None:
        where = "the twin registry (security.twin_registry)" if config.registry is not None else "any reading"
        return deny(GateReason.UNKNOWN_TWIN, f"twin {state.twin_id!r} is unknown: not in {where}")
    if policy is None:
        return deny(GateReason.NO_POLICY, "no policy file configured (security.policy_file): every change is denied")
    decision = policy.authorize(upd, who.attrs, attrs)
    if not decision.allowed:
        return deny(decision.reason, decision.detail)
    for name in upd.values:
        if name not in state.reported and name not in state.desired and not rules.declares(name):
            known = ", ".join(sorted(set(state.reported) | set(state.desired))) or "none yet"
            return deny(
                GateReason.UNKNOWN_PARAMETER,
                f"twin {state.twin_id!r} has no parameter {name!r} (known: {known}); "
                f"declare it under [twin.policy] to set it before it reports",
            )
        if rules.param(name).strategy is Strategy.PHYSICAL_WINS:
            return deny(
                GateReason.PHYSICAL_WINS,
                f"{name!r} follows the device (strategy physical_wins): a desired value would be overwritten; "
                f'if it is a setpoint the device accepts, set strategy = "digital_wins" or "merge" for it under '
                "[twin.policy] to drive it (a measurement cannot be driven)",
            )
    if upd.expected_version is not None and upd.expected_version != state.desired_version:
        return deny(
            GateReason.STALE_VERSION,
            f"expected desired version {upd.expected_version}, but twin {state.twin_id!r} is at desired version "
            f"{state.desired_version}; read it again (`twinflow twin show {state.twin_id}`) and retry",
        )
    return True, "allowed", decision.detail, actor, via


class DesiredGate:
    """Judges desired requests and keeps their verdicts until :meth:`commit` records them together.

    Shared by the flow's workers (a lock serialises them). The caller forwards nothing a verdict
    allowed before ``commit`` returns (the twin flow commits each polled batch in a step of its own)."""

    def __init__(self, config: GateConfig, store: DecisionStore) -> None:
        self.config = config
        self.store = store
        self._lock = threading.RLock()
        self._pending: list[Verdict] = []
        # Known verdicts (recalled from the store, or pending) by position and request id; None: none.
        self._by_position: dict[Position, Verdict | None] = {}
        self._by_request: dict[str, Verdict | None] = {}

    def recall(self, events: Iterable[DesiredEvent]) -> None:
        """Look up what the store knows of these records and their request ids, in one call."""
        with self._lock:
            positions = {e.position for e in events if e.position is not None} - self._by_position.keys()
            rids = {request_id_of(e) for e in events} - self._by_request.keys()
            if not positions and not rids:
                return
            by_position, by_request = self.store.recall(rids, positions)
            for p in positions:
                self._by_position[p] = by_position.get(p)
            for r in rids:
                self._by_request[r] = by_request.get(r)

    def judge(self, state: TwinState, ev: DesiredEvent, rules: TwinRules, now: datetime | None = None) -> Verdict:
        """Decide (or recall) the verdict on ``ev`` for the twin in ``state``; kept for :meth:`commit`."""
        now = now or datetime.now(UTC)
        rid = request_id_of(ev)
        with self._lock:
            self.recall([ev])
            prior = self._by_position.get(ev.position) if ev.position is not None else None
            if prior is not None:
                return Verdict(**{**prior.__dict__, "repeated": True})
            prior = self._by_request.get(rid)
            verdict = self._verdict(state, ev, rules, now, rid, prior)
            self._pending.append(verdict)
            if ev.position is not None:
                self._by_position[ev.position] = verdict
            if prior is None and verdict.reason not in UNAUTHENTICATED:
                self._by_request[rid] = verdict
            return verdict

    def commit(self) -> int:
        """Record the pending verdicts, in the order judged, in one store call; returns how many."""
        with self._lock:
            pending = self._pending
            if pending:
                self.store.record(pending)
            self._pending = []
            self._by_position.clear()  # the next batch asks the store again (other processes write too)
            self._by_request.clear()
            return len(pending)

    def _verdict(
        self, state: TwinState, ev: DesiredEvent, rules: TwinRules, now: datetime, rid: str, prior: Verdict | None
    ) -> Verdict:
        allowed, reason, detail, actor, via = decide(self.config, state, ev, rules, now, prior)
        upd = ev.update
        old: dict[str, Any] = {"values": {k: (state.desired[k][0] if k in state.desired else None) for k in upd.values}}
        new: dict[str, Any] = {"values": dict(upd.values), "request_id": rid, "issued_at": upd.issued_at}
        if upd.mode is not None:
            old["mode"], new["mode"] = state.mode, upd.mode
        if upd.expected_version is not None:
            new["expected_version"] = upd.expected_version
        if upd.reason:
            new["reason"] = upd.reason
        if via is not None:
            new["via"] = via
        return Verdict(
            rid,
            state.twin_id,
            actor,
            allowed,
            reason,
            detail,
            via,
            old,
            new,
            state.desired_version,
            ev.position,
        )


def _where(position: tuple[str, int, int] | None) -> str:
    return "?" if position is None else f"{position[0]}[{position[1]}]@{position[2]}"


__all__ = [
    "UNAUTHENTICATED",
    "AuthReason",
    "DecisionStore",
    "DesiredGate",
    "GateConfig",
    "GateReason",
    "MemoryStore",
    "Position",
    "Recalled",
    "Verdict",
    "decide",
]
