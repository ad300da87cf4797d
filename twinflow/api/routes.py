"""Routes of ``/api/v1``: twins, history, telemetry, model outputs, desired changes, alerts, events."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from operators.records.envelope import SENSOR_PATTERN, TWIN_ID_PATTERN
from twinflow.api.problems import Problem
from twinflow.api.sse import EventStreamResponse
from twinflow.api.state_cache import desired_version, encode_state

router = APIRouter(prefix="/api/v1")
TwinIdPath = Annotated[str, Path(description="A twin id, e.g. pump-001", max_length=128)]
ALL_EVENT_TYPES = ("state", "alert", "twin_alert", "desired", "score")
FLEET_EVENT_TYPES = ("state", "alert", "twin_alert", "desired")
ALERT_STATES = {
    "active": ["open", "acknowledged"],
    "open": ["open"],
    "acknowledged": ["acknowledged"],
    "resolved": ["resolved"],
    "all": ["open", "acknowledged", "resolved"],
}
ISA_FILTERS = ("unack_active", "ack_active", "unack_cleared", "shelved", "suppressed", "out_of_service")


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return float(obj)
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    raise TypeError(f"{type(obj).__name__} is not JSON")


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default)


def reader(request: Request) -> str:
    return request.app.state.auth.reader(request)


def writer(request: Request) -> str:
    return request.app.state.auth.writer(request)


Reader = Annotated[str, Depends(reader)]
Writer = Annotated[str, Depends(writer)]


def twin_id_ok(twin_id: str) -> str:
    if not re.match(TWIN_ID_PATTERN, twin_id):
        raise Problem(400, "bad-twin-id", f"{twin_id[:140]!r} is not a twin id ({TWIN_ID_PATTERN})")
    return twin_id


def etag(state: dict[str, Any]) -> str:
    return f'"{desired_version(state)}"'


def _since(value: datetime | None, default: timedelta) -> datetime:
    return value if value is not None else datetime.now(UTC) - default


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise Problem(400, "naive-time", f"{name}: give a time zone, e.g. 2026-11-25T08:00:00Z")
    return value


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")


def parse_bucket(text: str | None) -> timedelta | None:
    """``10s``, ``1m``, ``1h`` → timedelta (at least 10 ms)."""
    if not text:
        return None
    m = _DURATION.match(text.strip())
    if not m:
        raise Problem(400, "bad-bucket", f"bucket {text[:40]!r}: write a number and a unit (ms, s, m, h, d), e.g. 1m")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    delta = timedelta(seconds=float(m.group(1)) * unit)
    if delta < timedelta(milliseconds=10):
        raise Problem(400, "bad-bucket", "bucket: at least 10ms")
    return delta


# ---------------------------------------------------------------------------------------------- twins
def _registry(request: Request):
    cached = getattr(request.app.state, "registry", False)
    if cached is False:
        from connectors.config.security_files import load_twin_registry

        path = request.app.state.settings.security.twin_registry
        cached = load_twin_registry(path) if path else None
        request.app.state.registry = cached
    return cached


def _summary(row: dict[str, Any], attrs: dict[str, Any]) -> dict[str, Any]:
    score = None
    if row.get("score") is not None:
        score = {"score": row["score"], "threshold": row["threshold"], "ts": row["score_ts"]}
    return {
        "twin_id": row["twin_id"],
        "status": row["status"],
        "mode": row["mode"],
        "version": row["version"],
        "desired_version": desired_version(row),
        "event_time": row["event_time"],
        "conflicts": len(row["conflicts"]),
        "consistency_score": row["consistency_score"],
        "open_alerts": row["open_alerts"],
        "worst_severity": row["worst_severity"],
        "anomaly": score,
        "health": row.get("health"),
        "attributes": attrs,
    }


@router.get("/twins", response_class=JSON, summary="The fleet: status, health and open alerts of each twin")
async def list_twins(
    request: Request,
    _: Reader,
    status: Annotated[str | None, Query(pattern="^(synchronized|desynced|simulating|maintenance)$")] = None,
    type: Annotated[str | None, Query(max_length=64, description="twin registry attribute `type`")] = None,
    site: Annotated[str | None, Query(max_length=64, description="twin registry attribute `site`")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str, Query(max_length=128, description="`next` of the previous page")] = "",
) -> JSON:
    reads = request.app.state.reads
    registry = _registry(request)
    wanted = {k: v for k, v in (("type", type), ("site", site)) if v is not None}
    items: list[dict[str, Any]] = []
    after, more = cursor, True
    while len(items) < limit and more:
        rows = await reads.fleet(after=after, limit=limit, status=status)
        more = len(rows) == limit
        for row in rows:
            after = row["twin_id"]
            attrs = (registry.attrs(row["twin_id"]) if registry else None) or {}
            if all(str(attrs.get(k)) == v for k, v in wanted.items()):
                items.append(_summary(row, attrs))
                if len(items) == limit:
                    break
        if not wanted:
            break
    nxt = items[-1]["twin_id"] if len(items) == limit and more else None
    return JSON({"items": items, "next": nxt})


@router.get("/twins/{twin_id}", response_class=JSON, summary="A twin's state document (ETag: desired version)")
async def get_twin(request: Request, twin_id: TwinIdPath, _: Reader) -> Response:
    state = request.app.state
    cache = state.cache if state.cache.max_entries and state.hub.ready.is_set() and not state.hub.error else None
    entry = cache.get(twin_id) if cache is not None else None
    if entry is None:
        row = await state.reads.twin(twin_id_ok(twin_id))
        if row is None:
            raise Problem(404, "no-such-twin", f"no state for twin {twin_id!r}")
        entry = state.cache.put_row(row) if cache is not None else encode_state(row)
    _version, desired, body = entry
    return Response(body, media_type="application/json", headers={"ETag": f'"{desired}"', "Cache-Control": "no-cache"})


@router.get("/twins/{twin_id}/history", response_class=JSON, summary="State versions in a time range, or as of `at`")
async def twin_history(
    request: Request,
    twin_id: TwinIdPath,
    _: Reader,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    at: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
) -> JSON:
    reads = request.app.state.reads
    twin_id_ok(twin_id)
    if at is not None:
        row = await reads.state_at(twin_id, _aware(at, "at"))
        if row is None:
            raise Problem(404, "no-state-then", f"twin {twin_id!r} had no state at or before {at.isoformat()}")
        return JSON(row)
    rows = await reads.history(twin_id, _aware(from_, "from"), _aware(to, "to"), limit)
    return JSON({"items": rows})


@router.get("/twins/{twin_id}/telemetry", response_class=JSON, summary="Readings, raw or per time bucket")
async def twin_telemetry(
    request: Request,
    twin_id: TwinIdPath,
    _: Reader,
    sensor: Annotated[list[str] | None, Query(description="repeat for several")] = None,
    from_: Annotated[datetime | None, Query(alias="from", description="default: 15 minutes ago")] = None,
    to: datetime | None = None,
    bucket: Annotated[str | None, Query(description="e.g. 10s, 1m, 1h (omit for raw readings)")] = None,
    limit: Annotated[int, Query(ge=1, le=200_000)] = 50_000,
) -> JSON:
    twin_id_ok(twin_id)
    for s in sensor or []:
        if not re.match(SENSOR_PATTERN, s):
            raise Problem(400, "bad-sensor", f"{s[:80]!r} is not a sensor name")
    since = _since(_aware(from_, "from"), timedelta(minutes=15))
    until = _aware(to, "to") or datetime.now(UTC) + timedelta(minutes=5)
    size = parse_bucket(bucket)
    rows = await request.app.state.reads.telemetry(twin_id, sensor or None, since, until, size, limit)
    series: dict[str, dict[str, list]] = {}
    cols = ("mean", "min", "max", "n") if size else ("value", "quality")
    for r in rows:
        s = series.setdefault(r["sensor"], {"ts": [], **{c: [] for c in cols}})
        s["ts"].append(r["ts"])
        for c in cols:
            s[c].append(r[c])
    return JSON({"twin_id": twin_id, "from": since, "to": until, "bucket": bucket, "series": series})


@router.get("/twins/{twin_id}/scores", response_class=JSON, summary="Anomaly scores and health with their thresholds")
async def twin_scores(
    request: Request,
    twin_id: TwinIdPath,
    _: Reader,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 20_000,
) -> JSON:
    twin_id_ok(twin_id)
    since = _since(_aware(from_, "from"), timedelta(minutes=15))
    until = _aware(to, "to") or datetime.now(UTC) + timedelta(minutes=5)
    rows = await request.app.state.reads.scores(twin_id, since, until, limit)
    rules = request.app.state.settings.alerts.rules
    health_thresholds = {  # the alerts flow's condition alarm on the health index (docs/ml.md)
        "open_below": rules.health_open,
        "clear_above": rules.health_clear,
        "major_below": rules.health_major,
        "critical_below": rules.health_critical,
    }
    out: dict[str, Any] = {k: [r[k] for r in rows] for k in ("ts", "score", "threshold", "is_anomaly", "health")}
    return JSON({**out, "health_thresholds": health_thresholds})


@router.get("/twins/{twin_id}/forecasts", response_class=JSON, summary="The latest forecast per sensor")
async def twin_forecasts(request: Request, twin_id: TwinIdPath, _: Reader) -> JSON:
    rows = await request.app.state.reads.forecasts(twin_id_ok(twin_id))
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        f = out.setdefault(
            r["sensor"],
            {
                "made_at": r["ts"],
                "limit": r["limit_value"],
                "breach_at": r["breach_at"],
                **{k: [] for k in ("target_ts", "predicted", "lower", "upper")},
            },
        )
        for k in ("target_ts", "predicted", "lower", "upper"):
            f[k].append(r[k])
    return JSON(out)


# ---------------------------------------------------------------------------------------------- desired
class DesiredPatch(BaseModel):
    """Desired values to set (a merge: parameters not named keep their desired value)."""

    model_config = ConfigDict(extra="forbid")
    values: dict[Annotated[str, Field(pattern=SENSOR_PATTERN)], float] = Field(default_factory=dict, max_length=256)
    mode: Literal["normal", "maintenance", "simulating"] | None = None
    reason: str = Field("", max_length=500)


def parse_if_match(header: str | None) -> int | None:
    """``"12"`` or ``W/"12"`` → 12; ``*`` → None (any version)."""
    if header is None:
        return None
    text = header.strip()
    if text == "*":
        return None
    m = re.fullmatch(r'(?:W/)?"(\d{1,18})"', text)
    if not m:
        raise Problem(400, "bad-if-match", 'If-Match: give the ETag of GET /api/v1/twins/{id}, e.g. "12"')
    return int(m.group(1))


@router.patch(
    "/twins/{twin_id}/desired",
    response_class=JSON,
    status_code=202,
    summary="Change desired values (If-Match: the desired version); the outcome follows on the event stream",
    responses={412: {"description": "stale If-Match"}, 428: {"description": "If-Match missing"}},
)
async def patch_desired(
    request: Request,
    twin_id: TwinIdPath,
    body: DesiredPatch,
    subject: Writer,
    if_match: Annotated[str | None, Header()] = None,
) -> JSON:
    from twinflow.api.desired import submit

    settings = request.app.state.settings
    twin_id_ok(twin_id)
    if not body.values and body.mode is None:
        raise Problem(422, "empty-change", "give `values` (parameter → number) or `mode`")
    if if_match is None and settings.api.require_if_match:
        raise Problem(428, "if-match-required", 'send If-Match with the ETag of GET /api/v1/twins/{id} (or "*")')
    expected = parse_if_match(if_match)
    row = await request.app.state.reads.twin(twin_id)
    if row is None:
        raise Problem(404, "no-such-twin", f"no state for twin {twin_id!r}")
    current = desired_version(row)
    if expected is not None and expected != current:
        raise Problem(
            412,
            "stale-version",
            f"the desired document is at version {current}, not {expected}; GET it again and retry",
            headers={"ETag": etag(row)},
            current_version=current,
        )
    return JSON(await submit(request.app, subject, twin_id, body, expected), status_code=202)


# ---------------------------------------------------------------------------------------------- alerts
@router.get("/alerts", response_class=JSON, summary="Alerts by state (also ISA-18.2 states)")
async def list_alerts(
    request: Request,
    _: Reader,
    state: Annotated[
        str, Query(description="active, open, acknowledged, resolved, all, or an ISA-18.2 state")
    ] = "active",
    twin: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JSON:
    if state not in ALERT_STATES and state not in ISA_FILTERS:
        raise Problem(400, "bad-state", f"state {state[:40]!r}: use one of {', '.join([*ALERT_STATES, *ISA_FILTERS])}")
    isa = [state] if state in ISA_FILTERS else None
    states = ALERT_STATES["active"] if isa else ALERT_STATES[state]
    rows = await request.app.state.reads.alerts(states=states, isa_states=isa, twin_id=twin, limit=limit)
    return JSON({"items": [_alert_doc(r) for r in rows]})


def _alert_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "chattering": row["flapping"]}


@router.get("/alerts/metrics", response_class=JSON, summary="Alarm rate per operator-hour and floods (ISA-18.2)")
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


@router.get("/alerts/{alert_id}", response_class=JSON, summary="One alert")
async def get_alert(request: Request, alert_id: Annotated[str, Path(max_length=64)], _: Reader) -> JSON:
    row = await request.app.state.reads.alert(alert_id)
    if row is None:
        raise Problem(404, "no-such-alert", f"no alert {alert_id!r}")
    return JSON(_alert_doc(row))


class AlertActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=500, description="why (required to shelve)")
    until: datetime | None = Field(None, description="shelve: when the shelving expires (with a time zone)")
    duration_s: float | None = Field(None, gt=0, description="shelve: or how long, in seconds")


ActionName = Literal["ack", "resolve", "shelve", "unshelve", "out_of_service", "in_service"]


@router.post("/alerts/{alert_id}/{action}", response_class=JSON, summary="Acknowledge, resolve, shelve, unshelve, …")
async def alert_action(
    request: Request,
    alert_id: Annotated[str, Path(max_length=64)],
    action: ActionName,
    subject: Writer,
    body: AlertActionBody | None = None,
) -> JSON:
    from connectors.postgres.alerts_store import AlertStore
    from twinflow.alarms.actions import ActionRefused, act

    body = body or AlertActionBody()
    settings = request.app.state.settings
    now = datetime.now(UTC)
    until = _aware(body.until, "until")
    if action == "shelve" and until is None and body.duration_s is not None:
        until = now + timedelta(seconds=body.duration_s)
    producer = request.app.state.producer

    def run() -> Any:
        def publish(topic: str, key: str, value: bytes) -> None:
            errors: list[str] = []
            producer.produce(
                topic, key=key.encode(), value=value, on_delivery=lambda e, _m: e and errors.append(str(e))
            )
            if producer.flush(10) or errors:
                raise Problem(503, "kafka-unavailable", f"Kafka did not acknowledge the action: {errors or 'timeout'}")

        store = AlertStore(settings.postgres.conninfo(), max_attempts=3)
        try:
            return act(settings, store, publish, alert_id, action, subject, until=until, note=body.reason, now=now)
        finally:
            store.close()

    try:
        done = await run_in_threadpool(run)
    except ActionRefused as exc:
        raise Problem(exc.status, exc.reason.replace("_", "-"), exc.detail) from None
    return JSON({"alert": _alert_doc(done.alert), "changed": done.changed, "message": done.message})


# ---------------------------------------------------------------------------------------------- events
def _types(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if not text:
        return default
    wanted = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in wanted if t not in ALL_EVENT_TYPES]
    if bad:
        raise Problem(400, "bad-event-type", f"types {', '.join(bad)[:80]}: use {', '.join(ALL_EVENT_TYPES)}")
    return wanted


def _stream(request: Request, twin_id: str | None, types: tuple[str, ...], last_id: str | None) -> EventStreamResponse:
    hub = request.app.state.hub
    if hub.error or not hub.ready.is_set():
        raise Problem(503, "events-unavailable", f"live events are not available: {hub.error or 'starting'}")
    sub, positions = hub.subscribe(twin_id, types)
    buffered = hub.from_buffer(last_id, sub) if last_id else []

    async def backlog() -> list[bytes]:
        if buffered is None:  # not in the buffer: read Kafka again from the event's time
            return await asyncio.to_thread(hub.replay, last_id, sub, positions)
        return buffered

    return EventStreamResponse(hub, sub, backlog, request.app.state.settings.api.sse_keepalive_s)


EVENT_DOC = (
    "Server-sent events, live from Kafka: `state` (twin state versions), `alert` (alert versions), "
    "`twin_alert` (desync, command failures), `desired` (desired-change outcomes), `score` (anomaly scores). "
    "Reconnect with `Last-Event-ID` to resume where the stream stopped."
)


@router.get("/events", summary="Live events of every twin (SSE)", description=EVENT_DOC)
async def events(
    request: Request,
    _: Reader,
    types: Annotated[str | None, Query(description="comma-separated; default: all but score")] = None,
    last_event_id: Annotated[str | None, Header(max_length=128)] = None,
) -> EventStreamResponse:
    return _stream(request, None, _types(types, FLEET_EVENT_TYPES), last_event_id)


@router.get("/twins/{twin_id}/events", summary="Live events of one twin (SSE)", description=EVENT_DOC)
async def twin_events(
    request: Request,
    twin_id: TwinIdPath,
    _: Reader,
    types: Annotated[str | None, Query(description="comma-separated; default: all")] = None,
    last_event_id: Annotated[str | None, Header(max_length=128)] = None,
) -> EventStreamResponse:
    return _stream(request, twin_id_ok(twin_id), _types(types, ALL_EVENT_TYPES), last_event_id)


# ---------------------------------------------------------------------------------------------- misc
@router.get("/me", response_class=JSON, summary="Who the token belongs to")
async def me(subject: Reader) -> JSON:
    return JSON({"subject": subject})


@router.get("/health", response_class=JSON, summary="Database and live events reachable?")
async def health(request: Request) -> JSON:
    hub = request.app.state.hub
    db = await request.app.state.reads.ping()
    ok = db and hub.ready.is_set() and not hub.error
    return JSON({"ok": ok, "database": db, "events": hub.error or "ok"}, status_code=200 if ok else 503)
