"""Live events of ``/api/v1`` as server-sent events (:mod:`twinflow.api.sse`), for the fleet or one
twin, resumable with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request

from twinflow.api.auth import Reader
from twinflow.api.problems import Problem
from twinflow.api.routes.params import TwinIdPath, twin_id_ok
from twinflow.api.sse import EventStreamResponse

router = APIRouter()
ALL_EVENT_TYPES = ("state", "alert", "twin_alert", "desired", "score")
FLEET_EVENT_TYPES = ("state", "alert", "twin_alert", "desired")
_TYPE = f" *(?:{'|'.join(ALL_EVENT_TYPES)})? *"
TYPES_PATTERN = f"^{_TYPE}(?:,{_TYPE})*$"  # what _types takes: event types separated by commas


def _types(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if not text:
        return default
    wanted = tuple(t.strip(" ") for t in text.split(",") if t.strip(" "))
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


UNAVAILABLE: dict[int | str, dict] = {503: {"description": "the live events are not available (Kafka)"}}
EVENT_DOC = (
    "Server-sent events, live from Kafka: `state` (twin state versions), `alert` (alert versions), "
    "`twin_alert` (desync, command failures), `desired` (desired-change outcomes), `score` (anomaly scores). "
    "Reconnect with `Last-Event-ID` to resume where the stream stopped."
)


@router.get("/events", responses=UNAVAILABLE, summary="Live events of every twin (SSE)", description=EVENT_DOC)
async def events(
    request: Request,
    _: Reader,
    types: Annotated[
        str | None,
        Query(description="comma-separated; default: all but score", json_schema_extra={"pattern": TYPES_PATTERN}),
    ] = None,
    last_event_id: Annotated[str | None, Header(max_length=128)] = None,
) -> EventStreamResponse:
    return _stream(request, None, _types(types, FLEET_EVENT_TYPES), last_event_id)


@router.get(
    "/twins/{twin_id}/events", responses=UNAVAILABLE, summary="Live events of one twin (SSE)", description=EVENT_DOC
)
async def twin_events(
    request: Request,
    twin_id: TwinIdPath,
    _: Reader,
    types: Annotated[
        str | None, Query(description="comma-separated; default: all", json_schema_extra={"pattern": TYPES_PATTERN})
    ] = None,
    last_event_id: Annotated[str | None, Header(max_length=128)] = None,
) -> EventStreamResponse:
    return _stream(request, twin_id_ok(twin_id), _types(types, ALL_EVENT_TYPES), last_event_id)
