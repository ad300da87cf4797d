"""The JSON documents ``/api/v1`` answers with, as its OpenAPI document describes them (docs/api.md).

The routes encode their answers themselves (orjson; ``GET /twins/{id}`` sends the state cache's
pre-encoded bytes), so these models only describe the bodies: nothing validates an answer against them
per request. tests/api/test_api.py checks real answers against the server's own ``/api/openapi.json``.

Each document is described once, from the records it is made of: a twin's state document is what
:meth:`operators.twin.state.TwinState.document` publishes (``twin.state``, ``twin_state_history``); an alert
is a version of :class:`operators.records.alerts.Alert` as the ``alerts`` table keeps it; statuses, modes,
severities and ISA-18.2 states are the records' own types.

>>> sorted(AlertDocument.model_fields)[:4], "event" in AlertDocument.model_fields
(['acked_at', 'acked_by', 'alert_id', 'chattering'], False)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model

from operators.records.alerts import Alert, Severity
from operators.records.twin import Mode
from operators.telemetry.registry import Attrs
from operators.twin.state import CommandStatus, Status

Value = float | bool  # a reading or desired value: a number, or a boolean for on/off parameters


class Doc(BaseModel):
    """An answer's document: the members listed are always sent (``null`` where the type allows it)."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- twin state (TwinState.document)
class ReportedValue(Doc):
    value: Value
    ts: datetime = Field(description="the device's (source) timestamp")


class DesiredValue(Doc):
    value: Value
    ts: datetime
    author: str = Field(description="the subject that set it")


class CommandDoc(Doc):
    command_id: str
    value: float
    attempt: int
    status: CommandStatus


class ConnectivityDoc(Doc):
    """Whether the device can be reached (docs/reconciliation.md, "Connectivity")."""

    state: Literal["online", "offline", "unknown"] = Field(
        description="online: good readings arrive; offline: the device cannot be reached; unknown: not heard yet"
    )
    since: datetime | None = Field(description="event time since when the state holds")
    reason: str | None = Field(
        description="why, e.g. `opcua BadNoCommunication on pump-001.speed`, "
        "`no reading for 60 s (twin.offline_after_s)`"
    )
    unreachable: dict[str, datetime] = Field(
        default_factory=dict,
        description="sensors whose last status said no communication (e.g. OPC-UA `BadNoCommunication` from a "
        "gateway), each with the event time since when; the twin stays `online` while some of its sensors answer; "
        "absent in versions stored before it was kept (none then)",
    )


class Change(BaseModel):
    """The audit entry of a version: its cause, the changed fields (``path`` → ``[old, new]``) and who asked."""

    model_config = ConfigDict(extra="allow")
    cause: str
    fields: dict[str, list[Any]]
    author: str | None = None
    reason: str | None = None
    request_id: str | None = None


class TwinStateDocument(Doc):
    """A twin's state document (``GET /twins/{id}``, history, the ``state`` event): reported vs desired."""

    twin_id: str
    version: int
    desired_version: int = Field(description="the desired document's version (the ETag)")
    event_time: datetime
    status: Status
    mode: Mode
    learn: bool
    reported: dict[str, ReportedValue]
    desired: dict[str, DesiredValue]
    delta: dict[str, float] = Field(description="desired − reported per parameter that has both")
    conflicts: list[str] = Field(description="parameters not synchronized")
    commands: dict[str, CommandDoc]
    last_sync_time: datetime | None
    sync_latency_ms: float | None
    consistency_score: float = Field(ge=0, le=1)
    desync_since: datetime | None
    simulated: dict[str, ReportedValue] | None = Field(
        description="what-if values (readings of the simulation sources, mode simulating); null: a version "
        "stored before the history kept them (migration 0120)",
    )
    connectivity: ConnectivityDoc | None = Field(
        description="whether the device can be reached; status `offline` while it cannot; null: a version "
        "stored before the history kept it (migration 0145)",
    )
    change: Change


class TwinHistory(Doc):
    items: list[TwinStateDocument] = Field(description="newest first")


class HistoryAnswer(RootModel[TwinHistory | TwinStateDocument]):
    """State versions in a range (``items``), or with ``at`` the state document as of that time."""


# ---------------------------------------------------------------- the fleet
class AnomalyNow(Doc):
    score: float
    threshold: float
    ts: datetime


class TwinSummary(Doc):
    twin_id: str
    status: Status
    mode: Mode
    version: int
    desired_version: int
    event_time: datetime
    conflicts: int = Field(description="parameters not synchronized")
    consistency_score: float
    open_alerts: int
    worst_severity: Severity | None
    anomaly: AnomalyNow | None = Field(description="the latest anomaly score")
    health: float | None = Field(description="the latest health index")
    attributes: Attrs = Field(description="twin registry attributes; `type` from the twin policy where none")


class Fleet(Doc):
    items: list[TwinSummary]
    next: str | None = Field(description="`cursor` of the next page (null: the last page)")


# ---------------------------------------------------------------- telemetry and model outputs
class RawSeries(Doc):
    ts: list[datetime]
    value: list[float | None] = Field(description="null: a text or a reading without a value")
    quality: list[int] = Field(description="0 good, 1 uncertain, 2 bad")


class BucketSeries(Doc):
    ts: list[datetime] = Field(description="start of each bucket")
    mean: list[float | None]
    min: list[float | None]
    max: list[float | None]
    n: list[int] = Field(description="readings in the bucket")


class Telemetry(Doc):
    model_config = ConfigDict(populate_by_name=True)
    twin_id: str
    from_: datetime = Field(alias="from")
    to: datetime
    bucket: str | None
    series: dict[str, RawSeries | BucketSeries] = Field(
        description="per sensor: raw readings, or per bucket (mean, min, max, n) when `bucket` is given"
    )


class HealthThresholds(Doc):
    open_below: float
    clear_above: float
    major_below: float
    critical_below: float


class Scores(Doc):
    ts: list[datetime]
    score: list[float]
    threshold: list[float]
    is_anomaly: list[bool]
    health: list[float | None]
    model: list[str] = Field(description="the model of each score (empty: a built-in record that named none)")
    health_thresholds: HealthThresholds = Field(description="the condition alarm on the health index ([alerts.rules])")


class Forecast(Doc):
    made_at: datetime
    limit: float | None
    breach_at: datetime | None = Field(description="when the forecast crosses `limit` (null: not within the horizon)")
    model: str = Field(description="the model that made it (empty: a built-in forecast)")
    target_ts: list[datetime]
    predicted: list[float]
    lower: list[float | None]
    upper: list[float | None]


class Forecasts(RootModel[dict[str, Forecast]]):
    """The latest forecast of each sensor (sensor → forecast)."""


class FailurePredictions(Doc):
    """A twin's failure predictions over time (``failure_predictions``), oldest first."""

    ts: list[datetime] = Field(description="when each prediction was made")
    rul_s: list[float] = Field(description="remaining useful life (s): the failure is predicted at ts + rul_s")
    failure_probability: list[float] = Field(description="probability of a failure within `horizon_s`")
    uncertainty: list[float | None]
    horizon_s: list[float | None] = Field(description="the model's horizon (s) (null: the model named none)")
    model: list[str] = Field(description="the model of each prediction (empty: a built-in record that named none)")


class TwinModel(Doc):
    """A model with outputs for the twin: the value its outputs' `?model=` takes, and its newest output of each kind."""

    model: str = Field(description="`twinflow` for the built-in models, else the model's name (`?model=` takes it)")
    names: list[str] = Field(description="the outputs' `model` values (empty: a built-in record that named none)")
    last_output: datetime = Field(description="its newest output of any kind")
    scores: datetime | None = Field(description="its newest anomaly score (null: none in the window)")
    forecasts: datetime | None = Field(description="its newest forecast (null: none in the window)")
    failures: datetime | None = Field(description="its newest failure prediction (null: none in the window)")


class TwinModels(Doc):
    """The models with outputs for a twin since `since`: the built-in models first, then by name."""

    twin_id: str
    since: datetime = Field(description="outputs made since this time count (`within_h` hours ago)")
    items: list[TwinModel]


class PredictedFailure(Doc):
    """A twin whose latest failure prediction says it fails soon (the named query ``predicted_failures``)."""

    twin_id: str
    predicted_at: datetime = Field(description="when the latest prediction was made (at most 6 hours ago)")
    predicted_failure_at: datetime = Field(description="predicted_at + the remaining useful life")
    rul_hours: float = Field(description="remaining useful life (h) as of predicted_at")
    failure_probability: float
    uncertainty: float | None
    model: str = Field(description="the model that made it (empty: a built-in record that named none)")


class PredictedFailures(Doc):
    items: list[PredictedFailure] = Field(description="soonest first")
    within_h: float = Field(description="the horizon asked for (h)")
    min_probability: float = Field(description="the probability asked for ([alerts.rules] probability_open by default)")


# ---------------------------------------------------------------- desired changes
class DesiredAnswer(Doc):
    """A desired change the gate applied (``accepted``), or whose verdict had not come in time (``pending``)."""

    tracking_id: str = Field(description="the request id; its verdict follows on `events`")
    twin_id: str
    subject: str
    expected_version: int | None
    events: str
    status: Literal["accepted", "pending"]
    desired_version: int | None = Field(None, description="accepted: the new desired version")
    version: int | None = Field(None, description="accepted: the twin's state version")
    commands: list[str] = Field(default_factory=list, description="accepted: the commands sent")


# ---------------------------------------------------------------- alerts
def _alert_document() -> type[BaseModel]:
    """A row of the ``alerts`` table: an :class:`~operators.records.alerts.Alert` version without its
    ``event``, and ``chattering`` (ISA-18.2's name for ``flapping``)."""
    fields: dict[str, Any] = {f.name: (f.type, ...) for f in msgspec.structs.fields(Alert) if f.name != "event"}
    fields["chattering"] = (bool, Field(description="= flapping"))
    return create_model("AlertDocument", __base__=Doc, __doc__="One alert (its latest version).", **fields)


AlertDocument = _alert_document()


class AlertList(Doc):
    items: list[AlertDocument]  # type: ignore[valid-type]


class AlertActionResult(Doc):
    alert: AlertDocument  # type: ignore[valid-type]
    changed: bool = Field(description="false: nothing to do (e.g. already acknowledged)")
    message: str


class Delivery(Doc):
    """An alert version in the webhook outbox and its delivery (docs/alerts.md, "Webhook delivery")."""

    alert_id: str
    version: int
    twin_id: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    created_at: datetime = Field(description="queued (again: by a redelivery); the retention counts from then")
    next_attempt_at: datetime = Field(description="pending: when it is tried next (a receiver's Retry-After counts)")
    last_attempt_at: datetime | None
    settled_at: datetime | None = Field(description="when it was delivered or failed")
    http_status: int | None = Field(description="the receiver's last answer (null: none, e.g. a network error)")
    last_error: str | None = Field(description="why the last attempt failed, or why it failed for good")
    redelivered_by: str | None = Field(description="who queued it again after it failed")
    redelivered_at: datetime | None


class DeliveryList(Doc):
    items: list[Delivery]
    total: int = Field(description="how many rows the filters select (items is one page of them)")
    counts: dict[str, int] = Field(description="rows per state in the whole outbox: pending, delivered, failed")


class RedeliverResult(Doc):
    queued: list[int] = Field(description="the versions queued again")
    message: str


class QueuedVersion(Doc):
    alert_id: str
    version: int


class RedeliverAllResult(Doc):
    queued: list[QueuedVersion] = Field(description="every alert version queued again, by alert and version")
    message: str


class AlarmRate(Doc):
    """Alarm-system performance (ISA-18.2): :func:`twinflow.alarms.metrics.alarm_rate`."""

    since: datetime
    until: datetime
    operators: int
    annunciated: int
    per_operator_hour: float
    peak_10min_per_operator: float
    flood_periods: int


# ---------------------------------------------------------------- the caller and the server
class Me(Doc):
    subject: str


class Health(Doc):
    ok: bool
    database: bool
    events: str = Field(description="`ok`, or why the live events are not available")
