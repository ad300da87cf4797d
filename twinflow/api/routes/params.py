"""What the route modules share: the JSON response they answer with and the checks of the path and
query parameters they have in common (twin ids, times with a time zone, time windows, time buckets).

The routes check twin ids, sensor names and buckets themselves (a ``400`` problem naming the value); the
OpenAPI document declares the same patterns (``json_schema_extra``: described, not checked twice).

>>> parse_bucket("1m"), parse_bucket(None)
(datetime.timedelta(seconds=60), None)
>>> optional(TWIN_ID_PATTERN)
'^(?:[A-Za-z0-9][A-Za-z0-9._:-]{0,127})?$'
"""

# No ``from __future__ import annotations`` here: FastAPI reads the annotations of the dependency that
# :func:`outputs_window` makes, and they hold that call's arguments (strings could only name module globals).

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import Path, Query
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator

from operators.records.alerts import source_of
from operators.records.envelope import TWIN_ID_PATTERN
from twinflow.api.number_pattern import decimal_range
from twinflow.api.problems import Problem


def optional(pattern: str) -> str:
    """An anchored ``pattern`` (``^…$``) that also lets the empty string through (a parameter's "none")."""
    return f"^(?:{pattern.removeprefix('^').removesuffix('$')})?$"


def matches(pattern: str, text: str) -> bool:
    """``text`` is all of ``pattern`` (``$`` does not let a trailing newline through, as in JSON Schema)."""
    return re.fullmatch(pattern, text) is not None


TwinIdPath = Annotated[
    str, Path(description="A twin id, e.g. pump-001", max_length=128, json_schema_extra={"pattern": TWIN_ID_PATTERN})
]


NO_NUL = "^[^\\x00]*$"  # a text PostgreSQL can hold (the server answers a NUL byte with a 400 problem)
ModelQuery = Annotated[
    str,
    Query(
        max_length=128,
        description="whose model outputs: a model's name (e.g. `vib-lstm`); default and `twinflow`: the"
        " built-in models (docs/alerts.md, 'A model of your own')",
        json_schema_extra={"pattern": NO_NUL},
    ),
]


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return float(obj)
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    raise TypeError(f"{type(obj).__name__} is not JSON")


class JSON(JSONResponse):
    """A JSON answer encoded with orjson. The routes return it themselves, so FastAPI passes it on as it is:
    their ``response_model`` describes the body in the OpenAPI document and validates nothing per request."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default)


def twin_id_ok(twin_id: str) -> str:
    if not matches(TWIN_ID_PATTERN, twin_id):
        raise Problem(400, "bad-twin-id", f"{twin_id[:140]!r} is not a twin id ({TWIN_ID_PATTERN})")
    return twin_id


# An RFC 3339 date-time (what the document's format date-time says); its offset may be missing only so that
# aware_time can answer with a 400 that asks for one. pydantic alone would also take a number (Unix seconds).
RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


def _rfc3339(value: Any) -> Any:
    if not isinstance(value, datetime) and not (isinstance(value, str) and RFC3339.fullmatch(value)):
        raise ValueError("give an RFC 3339 date-time, e.g. 2026-11-25T08:00:00Z")
    return value


Time = Annotated[datetime, BeforeValidator(_rfc3339)]


def aware_time(value: datetime | None, name: str) -> datetime | None:
    """``value`` if it has a time zone (a 400 problem naming the parameter ``name`` if not)."""
    if value is not None and value.tzinfo is None:
        raise Problem(400, "naive-time", f"{name}: give a time zone, e.g. 2026-11-25T08:00:00Z")
    return value


def time_window(from_: datetime | None, to: datetime | None, ago: timedelta) -> tuple[datetime, datetime]:
    """The query's ``from`` and ``to`` (each with a time zone, else a 400 problem naming it), or by default
    from ``ago`` before now to 5 minutes from now.

    >>> since, until = time_window(None, None, timedelta(hours=1))
    >>> round((until - since) / timedelta(minutes=1))
    65
    >>> time_window(datetime(2026, 11, 25, 8), None, timedelta(hours=1))
    Traceback (most recent call last):
    ...
    twinflow.api.problems.Problem: from: give a time zone, e.g. 2026-11-25T08:00:00Z
    """
    since = aware_time(from_, "from")
    until = aware_time(to, "to")
    now = datetime.now(UTC)
    return (since if since is not None else now - ago), (until if until is not None else now + timedelta(minutes=5))


@dataclass(frozen=True)
class OutputsWindow:
    """What a read of a twin's model outputs over time asks for (:func:`outputs_window`)."""

    twin_id: str
    since: datetime
    until: datetime
    limit: int
    source: str  # whose outputs (:func:`operators.records.alerts.source_of` of the query's ``model``)


def outputs_window(ago: timedelta, from_doc: str | None = None) -> Callable[..., Awaitable[OutputsWindow]]:
    """The dependency of a read of a twin's model outputs over time (``GET /twins/{twin_id}/scores``,
    ``/failures``): the path's twin id and the query's ``from`` (by default ``ago`` before now; ``from_doc``
    describes that), ``to``, ``limit`` and ``model``, checked in that order (:func:`twin_id_ok`,
    :func:`time_window`). It declares the twin id too, so that the document lists the parameters and a
    422 problem the errors in the order the routes always had."""

    async def window(
        twin_id: TwinIdPath,
        from_: Annotated[Time | None, Query(alias="from", description=from_doc)] = None,
        to: Time | None = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 20_000,
        model: ModelQuery = "",
    ) -> OutputsWindow:
        twin_id_ok(twin_id)
        since, until = time_window(from_, to, ago)
        return OutputsWindow(twin_id, since, until, limit, source_of(model))

    return window


BUCKET_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600), "d": Decimal(86400)}
BUCKET_SYNTAX = r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)$"  # a number and a unit
MIN_BUCKET, MAX_BUCKET = timedelta(milliseconds=10), timedelta(days=366)
# What the server takes, as the pattern the document declares: a number (at most 9 decimals) and a unit,
# from 10 ms to 366 days, each unit's bounds written into the pattern (a client can check it).
BUCKET_PATTERN = "^(?:{})$".format(
    "|".join(
        decimal_range(Decimal("0.01") / size, Decimal(MAX_BUCKET.days * 86400) / size) + unit
        for unit, size in BUCKET_UNITS.items()
    )
)
BUCKET_DOC = (
    f"a number (at most 9 decimals) and a unit (ms, s, m, h, d), at least {MIN_BUCKET.total_seconds() * 1000:g}ms "
    f"and at most {MAX_BUCKET.days}d, e.g. 10s, 1m, 1h (omit for raw readings); the pattern holds the bounds"
)


def parse_bucket(text: str | None) -> timedelta | None:
    """``10s``, ``1m``, ``1h`` → timedelta; what :data:`BUCKET_PATTERN` takes (10 ms to 366 days).

    >>> parse_bucket("999999999999d")
    Traceback (most recent call last):
    ...
    twinflow.api.problems.Problem: bucket: at most 366 days
    """
    if not text:
        return None
    m = re.fullmatch(BUCKET_SYNTAX, text)
    if not m:
        raise Problem(400, "bad-bucket", f"bucket {text[:40]!r}: write a number and a unit (ms, s, m, h, d), e.g. 1m")
    if not re.fullmatch(BUCKET_PATTERN, text):
        seconds = Decimal(m.group(1)) * BUCKET_UNITS[m.group(2)]
        if seconds > MAX_BUCKET.total_seconds():
            raise Problem(400, "bad-bucket", f"bucket: at most {MAX_BUCKET.days} days")
        if seconds < Decimal("0.01"):
            raise Problem(400, "bad-bucket", f"bucket: at least {MIN_BUCKET.total_seconds() * 1000:g}ms")
        raise Problem(400, "bad-bucket", f"bucket {text[:40]!r}: at most 9 decimals")
    return timedelta(seconds=float(Decimal(m.group(1)) * BUCKET_UNITS[m.group(2)]))
