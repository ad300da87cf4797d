"""Failure and repair events on ``twin.events`` (key = twin_id): the labels of the failure model.

A CMMS integration or ``twinflow model event TWIN --kind failure`` publishes them; the models
flow decodes them here (a bad record raises :class:`~operators.records.envelope.Rejected`, i.e. goes to
the DLQ with a reason) and hands them to the twin's model step (:mod:`operators.ml.live_step`).

>>> from datetime import UTC, datetime
>>> ev = TwinEvent(twin_id="pump-001", kind="failure", time=datetime(2026, 11, 25, 8, tzinfo=UTC), author="ops")
>>> encode(ev)
b'{"twin_id":"pump-001","kind":"failure","time":"2026-11-25T08:00:00Z","v":1,"note":"","author":"ops"}'
>>> decode(encode(ev)) == ev
True
>>> decode(b'{"twin_id": "pump-001", "kind": "broken", "time": "2026-11-25T08:00:00Z"}')
Traceback (most recent call last):
...
operators.records.envelope.Rejected: schema: Invalid enum value 'broken' - at `$.kind`
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from operators.records.alerts import AwareTime
from operators.records.alerts import decode as decode_record
from operators.records.alerts import encode as encode_record
from operators.records.envelope import TwinId

EVENT_KINDS = ("failure", "repair")
EventKind = Literal["failure", "repair"]


class TwinEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``failure``: the twin failed at ``time`` (labels its history); ``repair``: repaired without failure."""

    twin_id: TwinId
    kind: EventKind
    time: AwareTime
    v: Literal[1] = 1
    note: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    author: Annotated[str, msgspec.Meta(max_length=200)] = ""


def encode(event: TwinEvent) -> bytes:
    return encode_record(event)


def decode(value: bytes | None) -> TwinEvent:
    """Decode one ``twin.events`` record; raises ``Rejected`` (schema / bad_json) otherwise."""
    return decode_record(TwinEvent, value)
