"""Twin reads of ``/api/v1``: the fleet, a twin's state document (ETag: its desired version), its
state history, telemetry, anomaly scores and health, forecasts and failure predictions, the models
with outputs for it, and the twins predicted to fail soon (the named query ``predicted_failures``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from operators.records.alerts import BUILTIN_SOURCE, source_of
from operators.records.envelope import SENSOR_PATTERN, TWIN_ID_PATTERN
from operators.telemetry.registry import FleetPage
from operators.twin.state import Status
from twinflow import queries
from twinflow.api import models
from twinflow.api.auth import Reader
from twinflow.api.problems import Problem
from twinflow.api.routes.params import (
    BUCKET_DOC,
    BUCKET_PATTERN,
    JSON,
    ModelQuery,
    OutputsWindow,
    Time,
    TwinIdPath,
    aware_time,
    matches,
    optional,
    outputs_window,
    parse_bucket,
    time_window,
    twin_id_ok,
)
from twinflow.api.state_cache import desired_version, encode_state

router = APIRouter()
# The twin and time window of a read of its model outputs, ``from`` by default 15 minutes or 24 hours ago.
ScoresWindow = Annotated[OutputsWindow, Depends(outputs_window(timedelta(minutes=15)))]
FailuresWindow = Annotated[OutputsWindow, Depends(outputs_window(timedelta(hours=24), "default: 24 hours ago"))]


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


@router.get(
    "/twins",
    response_class=JSON,
    response_model=models.Fleet,
    summary="The fleet: status, health and open alerts of each twin",
)
async def list_twins(
    request: Request,
    _: Reader,
    status: Annotated[str | None, Query(pattern=f"^({'|'.join(Status)})$")] = None,
    type: Annotated[
        str | None, Query(max_length=64, description="twin registry attribute `type`, else the twin policy's type")
    ] = None,
    site: Annotated[str | None, Query(max_length=64, description="twin registry attribute `site`")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str,
        Query(
            max_length=128,
            description="`next` of the previous page (a twin id)",
            json_schema_extra={"pattern": optional(TWIN_ID_PATTERN)},
        ),
    ] = "",
    model: ModelQuery = "",
) -> JSON:
    reads = request.app.state.reads
    source = source_of(model)
    if cursor:
        twin_id_ok(cursor)  # a twin id (`next` of the previous page)
    wanted = {k: v for k, v in (("type", type), ("site", site)) if v is not None}
    page = FleetPage(limit, wanted, _registry(request), request.app.state.settings.twin.policy.type_of, cursor)
    while page.wants_more:
        page.take(await reads.fleet(after=page.after, limit=page.batch, status=status, source=source))
    return JSON({"items": [_summary(row, attrs) for row, attrs in page.items], "next": page.next})


@router.get(
    "/twins/{twin_id}",
    response_class=JSON,
    responses={200: {"model": models.TwinStateDocument}},  # pre-encoded bytes (state cache): described only
    summary="A twin's state document (ETag: desired version)",
)
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


@router.get(
    "/twins/{twin_id}/history",
    response_class=JSON,
    response_model=models.HistoryAnswer,
    summary="State versions in a time range (`items`), or the state document as of `at`",
)
async def twin_history(
    request: Request,
    twin_id: TwinIdPath,
    _: Reader,
    from_: Annotated[Time | None, Query(alias="from")] = None,
    to: Time | None = None,
    at: Time | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
) -> JSON:
    reads = request.app.state.reads
    twin_id_ok(twin_id)
    if at is not None:
        row = await reads.state_at(twin_id, aware_time(at, "at"))
        if row is None:
            raise Problem(404, "no-state-then", f"twin {twin_id!r} had no state at or before {at.isoformat()}")
        return JSON(row)
    rows = await reads.history(twin_id, aware_time(from_, "from"), aware_time(to, "to"), limit)
    return JSON({"items": rows})


@router.get(
    "/twins/{twin_id}/telemetry",
    response_class=JSON,
    response_model=models.Telemetry,
    summary="Readings, raw or per time bucket",
)
async def twin_telemetry(
    request: Request,
    twin_id: TwinIdPath,
    _: Reader,
    sensor: Annotated[
        list[str] | None,
        Query(
            description="repeat for several", json_schema_extra={"items": {"type": "string", "pattern": SENSOR_PATTERN}}
        ),
    ] = None,
    from_: Annotated[Time | None, Query(alias="from", description="default: 15 minutes ago")] = None,
    to: Time | None = None,
    bucket: Annotated[
        str | None, Query(description=BUCKET_DOC, json_schema_extra={"pattern": optional(BUCKET_PATTERN)})
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200_000)] = 50_000,
) -> JSON:
    twin_id_ok(twin_id)
    for s in sensor or []:
        if not matches(SENSOR_PATTERN, s):
            raise Problem(400, "bad-sensor", f"{s[:80]!r} is not a sensor name")
    since, until = time_window(from_, to, timedelta(minutes=15))
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


@router.get(
    "/twins/{twin_id}/scores",
    response_class=JSON,
    response_model=models.Scores,
    summary="Anomaly scores and health with their thresholds",
)
async def twin_scores(request: Request, _: Reader, window: ScoresWindow) -> JSON:
    rows = await request.app.state.reads.scores(window.twin_id, window.since, window.until, window.limit, window.source)
    rules = request.app.state.settings.alerts.rules
    health_thresholds = {  # the alerts flow's condition alarm on the health index (docs/ml.md)
        "open_below": rules.health_open,
        "clear_above": rules.health_clear,
        "major_below": rules.health_major,
        "critical_below": rules.health_critical,
    }
    out: dict[str, Any] = {
        k: [r[k] for r in rows] for k in ("ts", "score", "threshold", "is_anomaly", "health", "model")
    }
    return JSON({**out, "health_thresholds": health_thresholds})


@router.get(
    "/twins/{twin_id}/forecasts",
    response_class=JSON,
    response_model=models.Forecasts,
    summary="The latest forecast per sensor",
)
async def twin_forecasts(request: Request, twin_id: TwinIdPath, _: Reader, model: ModelQuery = "") -> JSON:
    rows = await request.app.state.reads.forecasts(twin_id_ok(twin_id), source_of(model))
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        f = out.setdefault(
            r["sensor"],
            {
                "made_at": r["ts"],
                "limit": r["limit_value"],
                "breach_at": r["breach_at"],
                "model": r["model"],
                **{k: [] for k in ("target_ts", "predicted", "lower", "upper")},
            },
        )
        for k in ("target_ts", "predicted", "lower", "upper"):
            f[k].append(r[k])
    return JSON(out)


MODEL_KINDS = ("scores", "forecasts", "failures")


def models_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The models (sources) of ``rows`` (``kind``, ``model``, ``last``: :meth:`ApiReads.models`), the
    built-in models first, then by name; each with its names, and its newest output of each kind.

    >>> t1, t2 = datetime(2026, 1, 1, 8, tzinfo=UTC), datetime(2026, 1, 1, 9, tzinfo=UTC)
    >>> out = models_of([{"kind": "scores", "model": "vib-lstm", "last": t1},
    ...                  {"kind": "scores", "model": "", "last": t1},
    ...                  {"kind": "failures", "model": "twinflow-t2-rul:pumps", "last": t2}])
    >>> [(m["model"], m["names"], m["scores"] == t1, m["failures"] == t2, m["last_output"] == t2) for m in out]
    [('twinflow', ['', 'twinflow-t2-rul:pumps'], True, True, True), ('vib-lstm', ['vib-lstm'], True, False, False)]
    """
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        m = out.setdefault(source_of(r["model"]), {"names": set(), **dict.fromkeys(MODEL_KINDS)})
        m["names"].add(r["model"])
        if m[r["kind"]] is None or r["last"] > m[r["kind"]]:
            m[r["kind"]] = r["last"]
    return [
        {
            "model": source,
            "names": sorted(m["names"]),
            "last_output": max(m[k] for k in MODEL_KINDS if m[k] is not None),
            **{k: m[k] for k in MODEL_KINDS},
        }
        for source, m in sorted(out.items(), key=lambda kv: (kv[0] != BUILTIN_SOURCE, kv[0]))
    ]


@router.get(
    "/twins/{twin_id}/models",
    response_class=JSON,
    response_model=models.TwinModels,
    summary="The models with outputs (scores, forecasts, failure predictions) for a twin",
)
async def twin_models(
    request: Request,
    twin_id: TwinIdPath,
    _: Reader,
    within_h: Annotated[
        float, Query(gt=0, le=24 * 7, description="outputs made within this many hours count (default 24)")
    ] = 24.0,
) -> JSON:
    since = datetime.now(UTC) - timedelta(hours=within_h)
    rows = await request.app.state.reads.models(twin_id_ok(twin_id), since)
    return JSON({"twin_id": twin_id, "since": since, "items": models_of(rows)})


FAILURE_COLUMNS = ("ts", "rul_s", "failure_probability", "uncertainty", "horizon_s", "model")


@router.get(
    "/twins/{twin_id}/failures",
    response_class=JSON,
    response_model=models.FailurePredictions,
    summary="Failure predictions: remaining useful life and failure probability over time",
)
async def twin_failures(request: Request, _: Reader, window: FailuresWindow) -> JSON:
    rows = await request.app.state.reads.failures(
        window.twin_id, window.since, window.until, window.limit, window.source
    )
    return JSON({k: [r[k] for r in rows] for k in FAILURE_COLUMNS})


@router.get(
    "/failures",
    response_class=JSON,
    response_model=models.PredictedFailures,
    summary="Twins predicted to fail soon, soonest first",
)
async def predicted_failures(
    request: Request,
    _: Reader,
    within_h: Annotated[
        float, Query(gt=0, le=24 * 366, description="twins whose latest prediction fails within this many hours")
    ] = 24.0,
    min_probability: Annotated[
        float | None,
        Query(
            ge=0,
            le=1,
            description="also twins whose failure probability is at least this; default: [alerts.rules] "
            "probability_open (a failure alert opens there)",
        ),
    ] = None,
    twin: Annotated[
        list[str] | None,
        Query(
            description="only these twins (repeat for several)",
            json_schema_extra={"items": {"type": "string", "pattern": TWIN_ID_PATTERN}},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="at most this many, the soonest")] = 500,
    model: ModelQuery = "",
) -> JSON:
    for t in twin or []:
        twin_id_ok(t)
    if min_probability is None:
        min_probability = request.app.state.settings.alerts.rules.probability_open
    params = {
        "twins": twin or None,
        "within_h": within_h,
        "min_probability": min_probability,
        "source": source_of(model),
        "limit": limit,
    }
    rows = await request.app.state.reads.named(queries.load("predicted_failures"), params)
    return JSON({"items": rows, "within_h": within_h, "min_probability": min_probability})
