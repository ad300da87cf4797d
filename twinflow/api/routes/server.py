"""The caller and the server of ``/api/v1``: whose token it is, and whether the database and the
live events are reachable."""

from __future__ import annotations

from fastapi import APIRouter, Request

from twinflow.api import models
from twinflow.api.auth import Reader
from twinflow.api.routes.params import JSON

router = APIRouter()


@router.get("/me", response_class=JSON, response_model=models.Me, summary="Who the token belongs to")
async def me(subject: Reader) -> JSON:
    return JSON({"subject": subject})


@router.get(
    "/health",
    response_class=JSON,
    response_model=models.Health,
    responses={503: {"model": models.Health, "description": "the database or the live events are not reachable"}},
    summary="Database and live events reachable?",
)
async def health(request: Request) -> JSON:
    hub = request.app.state.hub
    db = await request.app.state.reads.ping()
    ok = db and hub.ready.is_set() and not hub.error
    return JSON({"ok": ok, "database": db, "events": hub.error or "ok"}, status_code=200 if ok else 503)
