"""What the route modules share: the JSON response they answer with and the checks of the path and
query parameters they have in common (twin ids, times with a time zone, time buckets).

>>> parse_bucket("1m"), parse_bucket(None)
(datetime.timedelta(seconds=60), None)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import Path, Response

from operators.records.envelope import TWIN_ID_PATTERN
from twinflow.api.problems import Problem

TwinIdPath = Annotated[str, Path(description="A twin id, e.g. pump-001", max_length=128)]


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


def twin_id_ok(twin_id: str) -> str:
    if not re.match(TWIN_ID_PATTERN, twin_id):
        raise Problem(400, "bad-twin-id", f"{twin_id[:140]!r} is not a twin id ({TWIN_ID_PATTERN})")
    return twin_id


def time_or_ago(value: datetime | None, default: timedelta) -> datetime:
    """``value``, or ``default`` before now."""
    return value if value is not None else datetime.now(UTC) - default


def aware_time(value: datetime | None, name: str) -> datetime | None:
    """``value`` if it has a time zone (a 400 problem naming the parameter ``name`` if not)."""
    if value is not None and value.tzinfo is None:
        raise Problem(400, "naive-time", f"{name}: give a time zone, e.g. 2026-11-25T08:00:00Z")
    return value


_DURATION = re.compile(r"^(\d{1,12}(?:\.\d{1,9})?)(ms|s|m|h|d)$", re.ASCII)
MAX_BUCKET = timedelta(days=366)


def parse_bucket(text: str | None) -> timedelta | None:
    """``10s``, ``1m``, ``1h`` → timedelta (at least 10 ms, at most a year).

    >>> parse_bucket("999999999999d")
    Traceback (most recent call last):
    ...
    twinflow.api.problems.Problem: bucket: at most 366 days
    """
    if not text:
        return None
    m = _DURATION.match(text.strip())
    if not m:
        raise Problem(400, "bad-bucket", f"bucket {text[:40]!r}: write a number and a unit (ms, s, m, h, d), e.g. 1m")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    seconds = float(m.group(1)) * unit
    if seconds > MAX_BUCKET.total_seconds():
        raise Problem(400, "bad-bucket", f"bucket: at most {MAX_BUCKET.days} days")
    delta = timedelta(seconds=seconds)
    if delta < timedelta(milliseconds=10):
        raise Problem(400, "bad-bucket", "bucket: at least 10ms")
    return delta
