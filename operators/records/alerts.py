"""Records that feed the alert lifecycle operator, and the alert record it emits.

Producers (the online-ML and reconciliation operators, the CLI) build these structs and
send them as JSON (``encode``); the alerts flow decodes them per topic (``decode``).
Times are timezone-aware datetimes (RFC 3339 on the wire), durations are seconds.

>>> rec = AnomalyScore("p1", parse_ts("2026-11-25T08:00:00Z"), 3.0, 1.0, True, {"temp": 0.7, "rpm": 0.3})
>>> decode(AnomalyScore, encode(rec)) == rec
True
>>> decode(AnomalyScore, b'{"twin_id": "p1"}')
Traceback (most recent call last):
...
operators.records.envelope.Rejected: schema: Object missing required field `ts`
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from operators.records.envelope import Reason, Rejected, TwinId
from operators.records.twin import decode_desync
from operators.telemetry.ingest import DeadLetter

AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
Severity = Literal["minor", "major", "critical"]
SEVERITIES: tuple[Severity, ...] = ("minor", "major", "critical")
State = Literal["open", "acknowledged", "resolved"]
# ISA-18.2 alarm states: unacknowledged/acknowledged × active/cleared (ack_cleared is normal), shelved,
# suppressed by design, out of service, and normal (returned to normal: resolved).
IsaState = Literal["unack_active", "ack_active", "unack_cleared", "shelved", "suppressed", "out_of_service", "normal"]
ISA_STATES: tuple[str, ...] = (
    "unack_active",
    "ack_active",
    "unack_cleared",
    "shelved",
    "suppressed",
    "out_of_service",
    "normal",
)
Kind = Literal["anomaly", "condition", "sensor_fault", "failure", "forecast_breach", "desync", "device_offline"]
MODEL_KINDS: tuple[Kind, ...] = ("anomaly", "condition", "sensor_fault", "failure", "forecast_breach")
"""The kinds that models' outputs raise (``desync`` and ``device_offline`` are the twin flow's)."""


class AnomalyScore(msgspec.Struct, frozen=True):
    """Per-twin anomaly score and condition (docs/ml.md).

    ``score`` is the bounded, calibrated anomaly score in [0, 1) and ``threshold`` the alarm level
    in the same units; ``contributions`` maps sensor → share of the score (sum ≈ 1); ``kind`` names
    the detector behind the current anomaly or state (novelty, condition, relation, sensor_fault;
    empty when normal); ``health`` is the condition index in [0, 1] against the healthy reference
    (None until it is learned), ``drivers`` the sensors that lower it (sensor → its own health);
    ``sensor_faults`` maps each faulty sensor to its fault (frozen, out_of_range, spikes,
    quantised, silent); ``model`` names the model that made it (empty: the built-in models,
    :func:`source_of`).
    """

    twin_id: TwinId
    ts: AwareTime
    score: float
    threshold: float
    is_anomaly: bool
    contributions: dict[str, float] = {}
    model: str = ""
    kind: str = ""
    health: float | None = None
    drivers: dict[str, float] = {}
    sensor_faults: dict[str, str] = {}


class FailurePrediction(msgspec.Struct, frozen=True):
    """Remaining useful life in seconds and probability of failure within the model's horizon."""

    twin_id: TwinId
    ts: AwareTime
    rul_s: float
    failure_probability: float
    uncertainty: float | None = None
    horizon_s: float | None = None
    # From the live models flow: the 90 % RUL interval, the model and its version
    # (version = failures the fleet model has learned; see docs/ml.md).
    rul_low_s: float | None = None
    rul_high_s: float | None = None
    model: str = ""
    model_version: int | None = None


class ForecastPoint(msgspec.Struct, frozen=True):
    """A sensor forecast made at ``ts`` for ``target_ts``, with interval and predicted breach.

    ``breach_at`` is when the forecast crosses ``limit`` (``None``: no breach within the horizon);
    ``model`` names the model that made it (empty: the built-in models, :func:`source_of`).
    """

    twin_id: TwinId
    sensor: str
    ts: AwareTime
    target_ts: AwareTime
    predicted: float
    lower: float | None = None
    upper: float | None = None
    limit: float | None = None
    breach_at: AwareTime | None = None
    model: str = ""


class DesyncEscalation(msgspec.Struct, frozen=True):
    """A desync escalation as the alert lifecycle sees it: made from a ``twin.desync`` record of
    kind ``desync`` or ``resynced`` (:func:`desync_escalation`), its time as ``ts`` like every
    lifecycle input. ``desync`` opens a ``desync`` alert; ``resynced`` (``in_sync``) clears its
    condition, so it returns to normal like any alert (resolved if acknowledged)."""

    twin_id: TwinId
    ts: AwareTime
    detail: dict[str, Any] = {}
    in_sync: bool = False
    # The alert kind: ``desync`` (kinds desync/resynced) or ``device_offline`` (kinds offline/online).
    alert: Literal["desync", "device_offline"] = "desync"


class TwinStatus(msgspec.Struct, frozen=True):
    """A twin entering (``maintenance=True``) or leaving maintenance.

    The twin flow publishes one whenever a twin's operator mode changes (``mode``: normal,
    maintenance, simulating): alerts are suppressed in maintenance, models learn only in normal."""

    twin_id: TwinId
    ts: AwareTime
    maintenance: bool
    by: str | None = None
    mode: Literal["normal", "maintenance", "simulating"] | None = None

    @property
    def learn(self) -> bool:
        """Whether the models may learn from this twin (mode normal, or not in maintenance)."""
        return self.mode == "normal" if self.mode is not None else not self.maintenance


ActionName = Literal["ack", "resolve", "shelve", "unshelve", "out_of_service", "in_service"]
ACTIONS: tuple[str, ...] = ("ack", "resolve", "shelve", "unshelve", "out_of_service", "in_service")


class AlertAction(msgspec.Struct, frozen=True):
    """A person acting on an alert (topic ``twin.alert_actions``): acknowledge, resolve, shelve until
    ``until`` (ISA-18.2 shelving, with ``note`` as the reason), unshelve, take the alarm out of service
    or return it to service."""

    alert_id: str
    twin_id: TwinId
    action: ActionName
    by: str
    ts: AwareTime
    note: str = ""
    until: AwareTime | None = None


class ParentAlarm(msgspec.Struct, frozen=True):
    """The alarm state of a twin's parent asset (topic ``twin.alert_suppression``, key = the child).

    While a parent has an active alarm, its children's alarms are suppressed by design (ISA-18.2):
    recorded, not annunciated, not escalated."""

    twin_id: TwinId
    ts: AwareTime
    parent_id: str
    alert_id: str
    active: bool


class Alert(msgspec.Struct, frozen=True):
    """One version of an alert, as written to ``twin.alerts``, the database and the webhook."""

    alert_id: str
    twin_id: str
    kind: Kind
    state: State
    severity: Severity
    version: int
    event: str  # opened | severity | escalated | acknowledged | resolved
    opened_at: datetime
    updated_at: datetime
    acked_at: datetime | None = None
    acked_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    escalation_level: int = 0
    flapping: bool = False  # chattering (ISA-18.2): flap_count openings within flap_window_s
    summary: str = ""
    evidence: dict[str, Any] = {}
    # ISA-18.2 (docs/alerts.md): the process condition, the alarm state, shelving, suppression.
    isa_state: IsaState = "unack_active"
    condition: Literal["active", "cleared"] = "active"
    shelved_until: datetime | None = None
    shelved_by: str | None = None
    shelve_reason: str = ""
    suppressed_by: str | None = None  # "maintenance" or "parent:<twin_id>"
    out_of_service: bool = False
    standing: bool = False  # active longer than standing_after_s
    reopened: int = 0  # times the alarm was annunciated again (shelving expired, suppression ended)


def isa_state(
    state: str,
    condition: str = "active",
    *,
    shelved: bool = False,
    suppressed: bool = False,
    out_of_service: bool = False,
) -> IsaState:
    """The ISA-18.2 state of an alert.

    >>> isa_state("open"), isa_state("acknowledged"), isa_state("open", "cleared"), isa_state("resolved")
    ('unack_active', 'ack_active', 'unack_cleared', 'normal')
    >>> isa_state("acknowledged", shelved=True), isa_state("open", suppressed=True, out_of_service=True)
    ('shelved', 'out_of_service')
    """
    if state == "resolved":
        return "normal"
    if out_of_service:
        return "out_of_service"
    if shelved:
        return "shelved"
    if suppressed:
        return "suppressed"
    return ("ack_" if state == "acknowledged" else "unack_") + condition  # type: ignore[return-value]


BUILTIN_SOURCE = "twinflow"
"""The source of the built-in models' outputs (the models flow's) in the alert lifecycle."""


def source_of(model: str) -> str:
    """The source (the model) an output's ``model`` names, by which the alert lifecycle judges each
    model's records apart (docs/alerts.md): records without a ``model``, and those of the built-in
    models (named ``twinflow-…``, e.g. ``twinflow-t2``), are :data:`BUILTIN_SOURCE`'s.

    >>> source_of(""), source_of("twinflow-t2"), source_of("twinflow-t2-rul:pumps"), source_of("vib-lstm")
    ('twinflow', 'twinflow', 'twinflow', 'vib-lstm')
    """
    if not model or model == BUILTIN_SOURCE or model.startswith("twinflow-"):
        return BUILTIN_SOURCE
    return model


InputRecord = (
    AnomalyScore | FailurePrediction | ForecastPoint | DesyncEscalation | TwinStatus | AlertAction | ParentAlarm
)
T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder] = {}


def encode(record: msgspec.Struct) -> bytes:
    """JSON bytes of a record."""
    return _encoder.encode(record)


def decode(cls: type[T], value: bytes | None) -> T:
    """Decode one record of type ``cls``; raise :class:`Rejected` (a dead-letter reason) otherwise."""
    if value is None:
        raise Rejected(Reason.SCHEMA, "empty message (tombstone)")
    dec = _decoders.get(cls)
    if dec is None:
        dec = _decoders[cls] = msgspec.json.Decoder(cls)
    try:
        return dec.decode(value)
    except msgspec.ValidationError as exc:
        raise Rejected(Reason.SCHEMA, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise Rejected(Reason.BAD_JSON, str(exc)) from None


def desync_escalation(value: bytes | None) -> DesyncEscalation | None:
    """The escalation (kind ``desync``) or its end (``resynced``) in a ``twin.desync`` record
    (:class:`operators.records.twin.DesyncEvent`); ``None`` for its other kinds (command failures
    are not alerts). Raise :class:`Rejected`.

    >>> desync_escalation(b'{"twin_id":"p1","kind":"desync","at":"2026-11-25T08:00:00Z","version":7,'
    ...                   b'"detail":{"parameters":["speed"]}}').detail
    {'parameters': ['speed']}
    >>> desync_escalation(b'{"twin_id":"p1","kind":"command_failed","at":"2026-11-25T08:00:00Z","version":8}')
    """
    event = decode_desync(value)
    if event.kind in ("desync", "resynced"):
        return DesyncEscalation(event.twin_id, event.at, event.detail, in_sync=event.kind == "resynced")
    if event.kind in ("offline", "online"):
        return DesyncEscalation(event.twin_id, event.at, event.detail, event.kind == "online", "device_offline")
    return None


def parse_ts(text: str) -> datetime:
    """An RFC 3339 timestamp (helper for tests and doctests)."""
    return msgspec.convert(text, AwareTime)


INPUT_TYPES: dict[str, type] = {
    "anomaly": AnomalyScore,
    "failure": FailurePrediction,
    "forecast": ForecastPoint,
    "status": TwinStatus,
    "action": AlertAction,
    "suppression": ParentAlarm,
}


DATA_KINDS = frozenset({"anomaly", "failure", "forecast", "desync"})
"""Input kinds whose ``ts`` drives a twin's alert clock (model outputs, desync escalations)."""


def decode_message(
    kind: str, msg: Any, now: datetime | None = None, *, max_future: timedelta | None = None
) -> InputRecord | DeadLetter | None:
    """One Kafka message of an input topic → record, dead letter (with reason) or ``None``.

    ``now``: the dead letter's ``rejected_at`` and the reference of ``max_future`` (default: the
    time it is decoded). ``max_future``: a record of :data:`DATA_KINDS` whose ``ts`` is further
    than this ahead is rejected (``ts_future``): its time would become the twin's clock, and every
    later record of its kind would be too old to count (a skewed clock would silence the twin).

    ``kind`` is one of :data:`INPUT_TYPES` or ``"desync"`` (the ``twin.desync`` topic; its command
    failures are not inputs: ``None``). A record whose twin_id differs from the Kafka key is
    rejected (the key decides which worker holds the twin's state).
    """
    try:
        if kind == "desync":
            rec: InputRecord | None = desync_escalation(msg.value)
        else:
            rec = decode(INPUT_TYPES[kind], msg.value)
        if rec is not None and msg.key is not None and msg.key != rec.twin_id.encode():
            raise Rejected(Reason.KEY_MISMATCH, f"Kafka key {msg.key[:140]!r} differs from twin_id {rec.twin_id!r}")
        if rec is not None and max_future is not None and kind in DATA_KINDS:
            ref = now or datetime.now(UTC)
            if rec.ts - ref > max_future:
                ahead = f"{(rec.ts - ref).total_seconds():.0f} s"
                raise Rejected(Reason.TS_FUTURE, f"ts {rec.ts.isoformat()} is {ahead} ahead of {ref.isoformat()}")
        return rec
    except Rejected as exc:
        return DeadLetter(
            value=msg.value,
            key=msg.key,
            reason=exc.reason.value,
            detail=exc.detail,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            rejected_at=now or datetime.now(UTC),
        )
