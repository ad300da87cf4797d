"""The routes of ``/api/v1``, one module per concern: twin reads (:mod:`.twins`), desired changes
(:mod:`.desired`), alerts (:mod:`.alerts`), live events (:mod:`.events`) and the caller and server
(:mod:`.server`). :data:`router` holds them all, in this order (that of the OpenAPI document).
"""

from __future__ import annotations

from fastapi import APIRouter

from twinflow.api.routes import alerts, desired, events, server, twins

router = APIRouter(prefix="/api/v1")
for part in (twins, desired, alerts, events, server):
    router.include_router(part.router)
