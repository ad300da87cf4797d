"""Model-control records on ``twin.model_control`` (key = twin_id), honoured by the live flow.

>>> rec = ControlRecord(twin_id="pump-001", action="reset", requested_at="2026-11-25T08:00:00Z")
>>> decode(encode(rec)) == rec
True
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from operators.envelope import TWIN_ID_PATTERN


class ControlRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``reset``: forget everything the twin's models learned; they warm up again."""

    twin_id: Annotated[str, msgspec.Meta(pattern=TWIN_ID_PATTERN)]
    action: Literal["reset"]
    requested_at: str
    v: Literal[1] = 1
    requested_by: str = ""


def encode(rec: ControlRecord) -> bytes:
    return msgspec.json.encode(rec)


def decode(value: bytes) -> ControlRecord:
    """Raises ``msgspec.ValidationError``/``DecodeError`` on a bad record (send it to the DLQ)."""
    return msgspec.json.decode(value, type=ControlRecord)
