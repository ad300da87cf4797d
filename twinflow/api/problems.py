"""Errors as RFC 9457 problem documents (``application/problem+json``).

Every error the API returns, from a route, validation, an unknown path or a crash, has
``type`` (a relative URI naming the problem), ``title``, ``status``, ``detail`` and ``instance``
(the request path); some add members (``errors``, ``reason``, ``retry_after``).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("twinflow.api")
MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "/api/problems/"


class Problem(Exception):
    """Raise to answer with a problem document; ``slug`` names its type (``/api/problems/<slug>``)."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.slug, self.detail = status, slug, detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers or {}
        self.extra = extra


def problem_body(status: int, slug: str, detail: str, instance: str, title: str | None = None, **extra: Any) -> dict:
    return {
        "type": TYPE_BASE + slug,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }


def problem_response(status: int, slug: str, detail: str, instance: str, headers=None, **extra: Any) -> JSONResponse:
    return JSONResponse(
        problem_body(status, slug, detail, instance, **extra),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


_SLUGS = {
    400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
    413: "too-large",
}  # fmt: skip


def install(app: FastAPI) -> None:
    """Route every error through problem documents."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status, exc.slug, exc.detail, request.url.path, headers=exc.headers, title=exc.title, **exc.extra
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = _SLUGS.get(exc.status_code, f"http-{exc.status_code}")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).description
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"nothing at {request.url.path}; the API is under /api/v1 (see /api/docs)"
        return problem_response(exc.status_code, slug, detail, request.url.path, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()
        ]
        json_error = any(e.get("type") == "json_invalid" for e in exc.errors())
        slug, detail = ("malformed-json", "the body is not valid JSON") if json_error else ("invalid-request", "")
        detail = detail or "; ".join(f"{e['where']}: {e['message']}" for e in errors)[:2000]
        status = 400 if json_error else 422
        return problem_response(status, slug, detail, request.url.path, errors=errors[:50])

    @app.exception_handler(psycopg.DataError)
    async def _bad_value(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # a value the database cannot take (a NUL byte in a text, a number out of range): the request's
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return problem_response(400, "bad-value", f"a value of the request cannot be used: {detail}", request.url.path)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal", "the server failed; the log has the details", request.url.path)
