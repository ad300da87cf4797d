"""The FastAPI application of ``twinflow serve``: the API under ``/api/v1``, its OpenAPI description
at ``/api/docs``, and the web view at ``/`` (docs/api.md).

>>> from twinflow.settings import Settings
>>> app = create_app(Settings())
>>> sorted(p for p in app.openapi()["paths"] if p.startswith("/api/v1/twins"))[:3]
['/api/v1/twins', '/api/v1/twins/{twin_id}', '/api/v1/twins/{twin_id}/desired']
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable
from contextlib import asynccontextmanager
from pathlib import Path

import plotly
import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from connectors.kafka.clients import client_config, producer_config
from connectors.kafka.event_hub import EventHub, HubTopics
from connectors.postgres.api_reads import ApiReads
from twinflow.api import problems
from twinflow.api.auth import Authenticator
from twinflow.api.fast_path import TwinReadFastPath
from twinflow.api.limits import BodyLimit, RateLimit
from twinflow.api.openapi_doc import openapi_documents
from twinflow.api.state_cache import StateCache
from twinflow.api.tokens import tokens_path
from twinflow.settings import Settings

log = logging.getLogger("twinflow.api")
WEB = Path(__file__).resolve().parent.parent / "web"
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
SWAGGER = Path(swagger_ui_bundle.swagger_ui_path)
# The web view loads only its own files (charts included): nothing from other hosts.
OPENAPI_31 = "/api/openapi-3.1.json"  # /api/openapi.json is 3.0.3
CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'"


def hub_topics(settings: Settings) -> HubTopics:
    tw, a = settings.twin, settings.alerts
    pairs = {
        tw.state_topic: "state",
        a.topic: "alert",  # alert versions of the alerts flow
        tw.desync_topic: "twin_alert",  # reconciliation: desync escalations, command failures
        a.anomalies_topic: "score",
        tw.outcomes_topic: "desired",  # the gate's verdicts, applied and denied
    }
    return HubTopics(tuple(pairs), tuple(pairs.values()))


async def _unless_stopped(work: Awaitable[object], stop: threading.Event | None) -> bool:
    """Await ``work`` unless ``stop`` is set first (then it is cancelled); whether it completed."""
    task = asyncio.ensure_future(work)
    while not task.done():
        if stop is not None and stop.is_set():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            return False
        await asyncio.wait({task}, timeout=0.1)
    task.result()
    return True


async def _hub_ready(ready: threading.Event, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def create_app(settings: Settings, stop: threading.Event | None = None) -> FastAPI:
    """The application; services (database pool, Kafka hub, producer) start with its lifespan.
    ``stop`` (``twinflow serve``: SIGTERM/SIGINT) ends a start-up that waits for PostgreSQL or Kafka:
    the server then stops at once."""
    from confluent_kafka import Producer

    from twinflow.api import routes

    api = settings.api

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = app.state
        started = await _unless_stopped(state.reads.open(), stop)
        if started:
            state.hub.state_listeners.append(state.cache.on_state)
            state.hub.start(asyncio.get_running_loop())
            started = await _unless_stopped(_hub_ready(state.hub.ready, 30), stop)
        if started and state.hub.error:
            log.error("live events unavailable: %s", state.hub.error)
        warm = asyncio.create_task(state.reads.warm(state.cache)) if started else None
        try:
            yield
        finally:
            log.info("stopping: live event streams, Kafka and the database pool")
            if warm is not None:
                warm.cancel()
            state.hub.stop(10 if started else 1)  # a hub still waiting for Kafka: its thread ends with the process
            state.producer.flush(5)
            await state.reads.close()
            log.info("stopped")

    app = FastAPI(
        title="twinflow",
        summary="Digital twins: state, desired changes, telemetry, model outputs, alerts, live events.",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    plain_openapi = app.openapi

    documents: dict[str, dict] = {}

    def openapi(version: str = "3.0") -> dict:
        """OpenAPI 3.0.3 (the bundled Swagger UI 4 and 3.0 clients read it), or 3.1, with bearer auth and problems."""
        if not documents:
            documents["3.0"], documents["3.1"] = openapi_documents(plain_openapi())
            for doc in documents.values():
                if api.require_if_match:  # this server refuses a desired change without If-Match (428)
                    patch = doc["paths"]["/api/v1/twins/{twin_id}/desired"]["patch"]
                    next(p for p in patch["parameters"] if p["name"] == "if-match")["required"] = True
            app.openapi_schema = documents["3.0"]
        return documents[version]

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.settings = settings
    app.state.auth = Authenticator(tokens_path(settings), api.anonymous_read)
    app.state.reads = ApiReads(settings.postgres.conninfo(), api.db_pool_size)
    app.state.hub = EventHub(
        client_config(settings), hub_topics(settings), api.sse_buffer_events, api.sse_client_buffer_bytes
    )
    app.state.producer = Producer(producer_config(settings))
    app.state.cache = StateCache(api.state_cache_entries)
    problems.install(app)
    app.include_router(routes.router)

    @app.get(OPENAPI_31, include_in_schema=False)
    async def openapi_31() -> JSONResponse:
        """The same document in OpenAPI 3.1, for clients and validators of JSON Schema 2020-12 (docs/api.md)."""
        return JSONResponse(openapi("3.1"))

    @app.get("/api/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/api/openapi.json",
            title="twinflow API",
            swagger_js_url="/api/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/api/docs/assets/swagger-ui.css",
            swagger_favicon_url="/api/docs/assets/favicon-32x32.png",
        )

    app.mount("/api/docs/assets", StaticFiles(directory=SWAGGER), name="swagger")

    @app.get("/static/vendor/plotly.min.js", include_in_schema=False)
    async def plotly_js() -> FileResponse:
        return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    app.mount("/static", StaticFiles(directory=WEB), name="web")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB / "index.html", headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})

    app.add_middleware(TwinReadFastPath, state=app.state)
    app.add_middleware(BodyLimit, max_bytes=api.max_body_bytes)
    app.add_middleware(RateLimit, rate_per_s=api.rate_per_s, burst=api.rate_burst)
    return app


def app_from_settings() -> FastAPI:
    """Factory for ``twinflow serve --workers N`` (each worker process reads the same settings)."""
    from twinflow.settings import load_settings

    return create_app(load_settings())
