"""Alerts of ``/api/v1``: lists by lifecycle or ISA-18.2 state, one alert, the alarm rate per
operator-hour, people's actions (acknowledge, resolve, shelve, …: :mod:`twinflow.alarms.actions`), and
the webhook outbox: its deliveries, and failed ones queued again (``twinflow alerts deliveries | redeliver``).

Reads take a :data:`~twinflow.api.auth.Reader`, changes a :data:`~twinflow.api.auth.Writer` whose subject
the policy file's alert rules must allow (:mod:`twinflow.authority`: 403 with the reason otherwise,
every decision in the audit chain, 503 when it cannot be audited), recorded with the change (an action's
``by``, a redelivery's ``redelivered_by``) and logged."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args

import psycopg
from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from operators.records.alerts import Kind, Severity, source_of
from operators.records.envelope import TWIN_ID_PATTERN
from twinflow.alarms.state_filters import NAMES, selection
from twinflow.api import models
from twinflow.api.auth import Reader, Writer
from twinflow.api.kafka_delivery import deliver
from twinflow.api.problems import Problem
from twinflow.api.routes.params import JSON, NO_NUL, Time, aware_time, twin_id_ok

router = APIRouter()
log = logging.getLogger("twinflow.api")


@router.get(
    "/alerts", response_class=JSON, response_model=models.AlertList, summary="Alerts by state (also ISA-18.2 states)"
)
async def list_alerts(
    request: Request,
    _: Reader,
    state: Annotated[
        str,
        Query(
            description="active, open, acknowledged, resolved, all, or an ISA-18.2 state",
            json_schema_extra={"enum": list(NAMES)},
        ),
    ] = "active",
    twin: Annotated[
        str | None, Query(max_length=128, description="a twin id", json_schema_extra={"pattern": TWIN_ID_PATTERN})
    ] = None,
    severity: Annotated[
        list[Severity] | None, Query(description="only these severities (repeat the parameter for several)")
    ] = None,
    kind: Annotated[list[Kind] | None, Query(description="only these kinds (repeat the parameter for several)")] = None,
    model: Annotated[
        str | None,
        Query(
            max_length=128,
            description="only the alerts this model raised: a model's name (e.g. `vib-lstm`: the alerts naming it"
            " in `evidence.sources`); `twinflow`: the built-in models' (docs/alerts.md, 'A model of your own')",
            json_schema_extra={"pattern": NO_NUL},
        ),
    ] = None,
    sort: Annotated[
        Literal["time", "severity"], Query(description="time: newest first; severity: critical first, then newest")
    ] = "time",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="skip this many first (the next page)")] = 0,
) -> JSON:
    from connectors.postgres.alerts_store import AlertQuery

    if state not in NAMES:
        raise Problem(400, "bad-state", f"state {state[:40]!r}: use one of {', '.join(NAMES)}")
    states, isa = selection(state)
    twin = twin_id_ok(twin) if twin is not None else None
    source = source_of(model) if model is not None else None
    query = AlertQuery(states, twin, isa, severity, kind, sort, limit, offset, source)
    rows = await request.app.state.reads.alerts(query)
    return JSON({"items": [_alert_doc(r) for r in rows]})


def _alert_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "chattering": row["flapping"]}


@router.get(
    "/alerts/metrics",
    response_class=JSON,
    response_model=models.AlarmRate,
    summary="Alarm rate per operator-hour and floods (ISA-18.2)",
)
async def alert_metrics(
    request: Request,
    _: Reader,
    hours: Annotated[float, Query(gt=0, le=24 * 366)] = 24.0,
    operators: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> JSON:
    from twinflow.alarms.metrics import alarm_rate

    s = request.app.state.settings
    until = datetime.now(UTC)
    since = until - timedelta(hours=hours)
    m = await run_in_threadpool(alarm_rate, s.postgres.conninfo(), since, until, operators or s.alerts.operators)
    return JSON(m)


DeliveryState = Literal["all", "pending", "delivered", "failed"]
NO_OUTBOX = "the database's webhook_outbox table is missing or old: run `twinflow db migrate`"
OUTBOX_MISSING: dict[int | str, dict[str, Any]] = {
    503: {"description": "the database has no (current) webhook_outbox table: twinflow db migrate"}
}
Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many (a page), newest first")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="skip this many first (the next page)")]


async def _deliveries(request: Request, state: str, alert: str | None, twin: str | None, limit: int, offset: int):
    from connectors.postgres.webhook_outbox import DELIVERY_STATES, DeliveryQuery

    query = DeliveryQuery(DELIVERY_STATES if state == "all" else (state,), alert, twin, limit, offset)
    try:
        page = await request.app.state.reads.deliveries(query)
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        raise Problem(503, "no-outbox", NO_OUTBOX) from None
    counts = {name: page.counts.get(name, 0) for name in DELIVERY_STATES}
    return JSON({"items": page.rows, "total": page.total, "counts": counts})


@router.get(
    "/alerts/deliveries",
    response_class=JSON,
    response_model=models.DeliveryList,
    summary="The webhook outbox: alert versions delivered, pending (next attempt) or failed (the reason)",
    responses=OUTBOX_MISSING,
)
async def list_deliveries(
    request: Request,
    _: Reader,
    state: Annotated[DeliveryState, Query(description="pending, delivered, failed, or all")] = "all",
    alert: Annotated[str | None, Query(max_length=64, description="only this alert's versions")] = None,
    twin: Annotated[
        str | None, Query(max_length=128, description="a twin id", json_schema_extra={"pattern": TWIN_ID_PATTERN})
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> JSON:
    twin = twin_id_ok(twin) if twin is not None else None
    return await _deliveries(request, state, alert, twin, limit, offset)


@router.get("/alerts/{alert_id}", response_class=JSON, response_model=models.AlertDocument, summary="One alert")
async def get_alert(request: Request, alert_id: Annotated[str, Path(max_length=64)], _: Reader) -> JSON:
    row = await request.app.state.reads.alert(alert_id)
    if row is None:
        raise Problem(404, "no-such-alert", f"no alert {alert_id!r}")
    return JSON(_alert_doc(row))


@router.get(
    "/alerts/{alert_id}/deliveries",
    response_class=JSON,
    response_model=models.DeliveryList,
    summary="One alert's versions in the webhook outbox",
    responses=OUTBOX_MISSING,
)
async def alert_deliveries(
    request: Request,
    alert_id: Annotated[str, Path(max_length=64)],
    _: Reader,
    state: Annotated[DeliveryState, Query(description="pending, delivered, failed, or all")] = "all",
    limit: Limit = 100,
    offset: Offset = 0,
) -> JSON:
    if await request.app.state.reads.alert(alert_id) is None:
        raise Problem(404, "no-such-alert", f"no alert {alert_id!r}")
    return await _deliveries(request, state, alert_id, None, limit, offset)


# What every alert action may answer besides its own refusals (twinflow.authority).
AUTHORIZED: dict[int | str, dict[str, Any]] = {
    403: {
        "description": "denied by the policy file's alert rules; the problem's `reason`: no_policy, no_subjects,"
        " unknown_subject, unknown_twin, no_matching_rule or action_not_allowed (docs/security.md)"
    },
    503: {"description": "the decision could not be appended to the audit trail: nothing was done"},
}


def _refused(exc: Any) -> Problem:
    """An :class:`~twinflow.alarms.actions.ActionRefused` as a problem (a denial names its ``reason``)."""
    extra = {"reason": exc.reason} if exc.status == 403 else {}
    return Problem(exc.status, exc.reason.replace("_", "-"), exc.detail, **extra)


async def _redeliver(
    request: Request, alert_id: str | None, version: int | None, subject: str
) -> list[tuple[str, int]]:
    """Queue failed webhook deliveries again (of ``alert_id``, or every one with None) if ``subject`` may;
    the ``(alert_id, version)`` queued, logged."""
    from twinflow.alarms.actions import ActionRefused, redeliver

    try:
        queued = await run_in_threadpool(redeliver, request.app.state.settings, subject, alert_id, version)
    except ActionRefused as exc:
        raise _refused(exc) from None
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        raise Problem(503, "no-outbox", NO_OUTBOX) from None
    if queued:
        log.info("webhook: %s queued %s again", subject, ", ".join(f"{a} v{v}" for a, v in sorted(queued)))
    return queued


@router.post(
    "/alerts/deliveries/redeliver",
    response_class=JSON,
    response_model=models.RedeliverAllResult,
    summary="Queue every failed webhook delivery again",
    responses={
        409: {"description": "no failed delivery in the outbox"},
        **AUTHORIZED,
        503: {"description": f"{OUTBOX_MISSING[503]['description']}; or {AUTHORIZED[503]['description']}"},
    },
)
async def redeliver_all(request: Request, subject: Writer) -> JSON:
    """After fixing the receiver or `alerts.webhook_url`: every failed version goes back to pending, as
    `twinflow alerts redeliver --failed` does; the alerts flow POSTs them in version order. Needs a policy rule
    granting `redeliver` without a twin condition (it is not bound to one twin)."""
    queued = await _redeliver(request, None, None, subject)
    if not queued:
        raise Problem(409, "nothing-to-redeliver", "no failed delivery in the webhook outbox")
    items = [{"alert_id": a, "version": v} for a, v in sorted(queued)]
    alerts = len({a for a, _ in queued})
    message = f"{len(items)} version(s) of {alerts} alert(s) queued again by {subject}"
    return JSON({"queued": items, "message": message})


class RedeliverBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(None, ge=1, le=2**31 - 1, description="only this version (default: every failed one)")


@router.post(
    "/alerts/{alert_id}/redeliver",
    response_class=JSON,
    response_model=models.RedeliverResult,
    summary="Queue an alert's failed webhook deliveries again",
    responses={
        409: {"description": "no failed delivery of the alert (or of that version) in the outbox"},
        **AUTHORIZED,
        503: {"description": f"{OUTBOX_MISSING[503]['description']}; or {AUTHORIZED[503]['description']}"},
    },
)
async def redeliver(
    request: Request,
    alert_id: Annotated[str, Path(max_length=64)],
    subject: Writer,
    body: RedeliverBody | None = None,
) -> JSON:
    version = (body or RedeliverBody()).version
    queued = await _redeliver(request, alert_id, version, subject)
    if not queued:
        which = f" v{version}" if version else ""
        raise Problem(409, "nothing-to-redeliver", f"no failed delivery of {alert_id}{which} in the webhook outbox")
    versions = sorted(v for _, v in queued)
    message = f"{len(versions)} version(s) of {alert_id} queued again by {subject}"
    return JSON({"queued": versions, "message": message})


class AlertActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=500, description="why")


# One character that is not whitespace as the server's check counts it (str.strip), written out: JSON Schema reads
# `\S` as ECMA-262 does, to which other characters are whitespace (U+001C, U+0085) than to Python. The 29 code
# points for which str.isspace() is true (tests/unit/test_api_openapi.py checks the list; no scan at import).
NOT_BLANK = (
    "[^"
    "\\u0009\\u000a\\u000b\\u000c\\u000d\\u001c\\u001d\\u001e\\u001f\\u0020\\u0085\\u00a0"
    "\\u1680\\u2000\\u2001\\u2002\\u2003\\u2004\\u2005\\u2006\\u2007\\u2008\\u2009\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
    "]"
)


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class ShelveBody(BaseModel):
    """A shelving: its expiry (``until``, else ``duration_s`` from now) and a reason, as the server requires them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"anyOf": [{"required": ["until"]}, {"required": ["duration_s"]}]},
    )
    reason: str = Field(max_length=500, description="why (not only spaces)", json_schema_extra={"pattern": NOT_BLANK})
    # optional, but not null: one of them is sent (the schema's anyOf), as a time or a number
    until: Time = Field(
        None, description="when the shelving expires (with a time zone; in the future)", json_schema_extra=_no_default
    )
    duration_s: float = Field(
        None,
        gt=0,
        le=10 * 366 * 86400,
        allow_inf_nan=False,
        description="or how long, in seconds (if no `until`)",
        json_schema_extra=_no_default,
    )

    @field_validator("reason")
    @classmethod
    def _reason(cls, reason: str) -> str:
        if not reason.strip():  # what NOT_BLANK says, with a message for people
            raise ValueError("shelving needs a reason (not only spaces)")
        return reason

    @model_validator(mode="after")
    def _expiry(self) -> ShelveBody:
        if self.until is None and self.duration_s is None:
            raise ValueError("give `until` (a time) or `duration_s` (seconds)")
        return self


ActionName = Literal["ack", "resolve", "unshelve", "out_of_service", "in_service"]
REFUSALS: dict[int | str, dict[str, Any]] = {
    409: {"description": "not possible in the alert's state (resolved, not shelved, not out of service)"},
    **AUTHORIZED,
}


@router.post(
    "/alerts/{alert_id}/shelve",
    response_class=JSON,
    response_model=models.AlertActionResult,
    summary="Shelve an alert until a time, or for a duration (with a reason)",
    responses={
        **REFUSALS,
        422: {
            "description": "the body does not fit, or an expiry not in the future or beyond alerts.rules.max_shelve_s"
        },
    },
)
async def shelve_alert(
    request: Request, alert_id: Annotated[str, Path(max_length=64)], subject: Writer, body: ShelveBody
) -> JSON:
    until = aware_time(body.until, "until")
    if until is None:
        until = datetime.now(UTC) + timedelta(seconds=body.duration_s or 0)
    return await _act(request, alert_id, "shelve", subject, body.reason, until)


ACTION_SUMMARIES: dict[str, str] = {
    "ack": "Acknowledge an alert",
    "resolve": "Resolve an alert",
    "unshelve": "Unshelve an alert",
    "out_of_service": "Take an alert out of service",
    "in_service": "Return an alert to service",
}


def _action_route(action: str) -> None:
    """``POST /alerts/{alert_id}/<action>``: one operation per action (a path of its own, so that a method a
    path does not have is answered 405, e.g. ``POST /alerts/{alert_id}/deliveries``, and not taken for an action)."""

    async def alert_action(
        request: Request,
        alert_id: Annotated[str, Path(max_length=64)],
        subject: Writer,
        body: AlertActionBody | None = None,
    ) -> JSON:
        return await _act(request, alert_id, action, subject, (body or AlertActionBody()).reason, None)

    router.post(
        f"/alerts/{{alert_id}}/{action}",
        response_class=JSON,
        response_model=models.AlertActionResult,
        summary=ACTION_SUMMARIES[action],
        responses=REFUSALS,
        name=f"alert_{action}",
    )(alert_action)


for _action in get_args(ActionName):
    _action_route(_action)


async def _act(request: Request, alert_id: str, action: str, subject: str, reason: str, until: datetime | None) -> JSON:
    from connectors.postgres.alerts_store import AlertStore
    from twinflow.alarms.actions import ActionRefused, act

    settings = request.app.state.settings
    now = datetime.now(UTC)
    producer = request.app.state.producer

    def run() -> Any:
        def publish(topic: str, key: str, value: bytes) -> None:
            deliver(producer, topic, key, value, 10, "Kafka did not acknowledge the action")

        store = AlertStore(settings.postgres.conninfo(), max_attempts=3)
        try:
            return act(settings, store, publish, alert_id, action, subject, until=until, note=reason, now=now)
        finally:
            store.close()

    try:
        done = await run_in_threadpool(run)
    except ActionRefused as exc:
        raise _refused(exc) from None
    return JSON({"alert": _alert_doc(done.alert), "changed": done.changed, "message": done.message})
