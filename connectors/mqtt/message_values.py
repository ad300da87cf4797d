"""The values of one mapped MQTT message for one twin: its parameters, source timestamp and quality.

A parameter is read at its JSON path, or is the whole payload (a plain number or ``true``/``false``,
or with ``type = "text"`` a plain text like ``ON``). Numbers and booleans are readings, strings text
readings where the parameter says ``type = "text"``;
anything else is the parameter's rejection (the other values go on). The route's
``ts_path``/``quality_path`` give the source timestamp (read with the MQTT timestamp policy,
:mod:`operators.devices.timestamps`; none = receive time) and the quality (good/uncertain/bad, a
status name like ``BadSensorFailure``, or an OPC-style number: ≥ 192 good, ≥ 64 uncertain).

>>> quality_of_field(200), quality_of_field("BadSensorFailure")
(('good', None), ('bad', 'BadSensorFailure'))
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from connectors.mqtt.payload import MISSING, Part, extract, parse_plain, plain_text
from connectors.mqtt.routes import TwinRoute
from operators.devices.timestamps import parse_device_ts
from operators.records.envelope import STATUS_PATTERN, Reason, Rejected, quality_of_status

QUALITIES = ("good", "uncertain", "bad")
_STATUS = re.compile(STATUS_PATTERN)


class MetaReader:
    """Reads a message's timestamp and quality; remembers the last timestamp parsed (the assets of one
    publisher share their timestamps)."""

    def __init__(self) -> None:
        self._ts_cache: tuple[object, str, datetime | None] = (None, "", None)

    def meta(self, route: TwinRoute, doc: Any) -> tuple[datetime, str, str | None]:
        """(ts, quality, status name) of a message for one twin; Rejected for an unreadable ts."""
        ts: datetime | None = None
        quality, status = "good", None
        if isinstance(doc, dict):
            if route.ts_parts is not None:
                raw = extract(doc, route.ts_parts)
                if raw is not MISSING and raw is not None:
                    ts = self._parse_ts(raw, route.ts_format)
            if route.q_parts is not None:
                q = extract(doc, route.q_parts)
                if q is not MISSING and q is not None:
                    quality, status = quality_of_field(q)
        return ts or datetime.now(UTC), quality, status

    def _parse_ts(self, raw: object, fmt: str) -> datetime:
        """``parse_device_ts`` with a one-entry cache."""
        last_raw, last_fmt, last = self._ts_cache
        if raw == last_raw and fmt == last_fmt and type(raw) is type(last_raw) and last is not None:
            return last
        ts = parse_device_ts(raw, fmt)  # type: ignore[arg-type]
        self._ts_cache = (raw, fmt, ts)
        return ts


def values_of(
    route: TwinRoute, payload: bytes, doc: Any, quality: str
) -> tuple[dict[str, Any], dict[str, str], list[tuple[str, str]] | None]:
    """(readings, text readings, [(parameter, why it was rejected)] or None) of one twin's parameters
    in a message (``doc``: the parsed JSON, None when the payload is not JSON)."""
    readings: dict[str, Any] = {}
    text: dict[str, str] = {}
    wrong: list[tuple[str, str]] | None = None
    for p in route.params:
        if p.parts is not None:
            value = extract(doc, p.parts)
        else:
            value = parse_plain(payload)
            if value is None and p.text:  # a plain text payload: `ON`, `running`
                said = plain_text(payload)
                if said is None:
                    wrong = [*(wrong or []), (p.name, "the payload is not UTF-8 text")]
                    continue
                value = said or MISSING  # an empty payload: no value
        if value is MISSING:
            continue
        cls = value.__class__
        if cls is float or cls is int or cls is bool:
            readings[p.name] = value
        elif cls is str and p.text:
            text[p.name] = value  # type: ignore[assignment]
        elif value is None and quality != "good":
            readings[p.name] = None
        elif value is None and p.parts is None:
            continue  # not a plain value: nothing of this parameter here
        else:
            hint = ' (set type = "text" for a text value)' if cls is str else ""
            why = (
                f"{show(value)} is not a number or a boolean{hint}"
                if value is not None
                else ("null with quality good (give quality bad, or leave the value out)")
            )
            if wrong is None:
                wrong = []
            wrong.append((p.name, why))
    return readings, text, wrong


def nothing_mapped(routes: list[TwinRoute], doc: Any, topic: str) -> tuple[Reason, str]:
    """Why a message gave no value and no rejection: not JSON, or none of the mapped paths in it."""
    if doc is None:
        return Reason.BAD_JSON, f"payload on {topic!r}: not JSON"
    paths = ", ".join(
        f"{p.name}={'<plain>' if p.parts is None else path_text(p.parts)}" for r in routes for p in r.params
    )
    return Reason.SCHEMA, f"payload on {topic!r}: none of the mapped values ({paths}) is in it"


def quality_of_field(q: object) -> tuple[str, str | None]:
    """A payload's quality field → (quality, status name)."""
    if q in QUALITIES:
        return q, None  # type: ignore[return-value]
    if isinstance(q, str) and _STATUS.match(q):
        return quality_of_status(q), q
    if isinstance(q, int | float) and not isinstance(q, bool):
        return ("good" if q >= 192 else "uncertain" if q >= 64 else "bad"), None
    raise Rejected(Reason.SCHEMA, f"quality {show(q)} is not good/uncertain/bad, a status name or a number", "quality")


def show(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '…' if len(text) > 60 else text}"


def path_text(parts: tuple[Part, ...]) -> str:
    return ".".join(p if isinstance(p, str) else f"{p[0]}[{p[1]}={p[2]}]" for p in parts)
