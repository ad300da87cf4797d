"""Model-control records on ``twin.model_control`` (key = twin_id), honoured by the live flow.

* ``reset``: forget everything the twin's models learned; they warm up again
  (``twinflow model reset``).
* ``rebaseline``: learn the twin's healthy reference again — of every sensor, or of ``sensor``
  only — after a deliberate change such as a replaced part (``twinflow model rebaseline``, audited);
  the novelty detector and everything else the twin learned stay.

>>> rec = ControlRecord(twin_id="pump-001", action="reset", requested_at="2026-11-25T08:00:00Z")
>>> decode(encode(rec)) == rec
True
>>> decode(b'{"twin_id": "pump-001", "action": "rebaseline", "sensor": "temp_c", "requested_at": "now"}').sensor
'temp_c'
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from operators.records.envelope import TWIN_ID_PATTERN


class ControlRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``reset`` or ``rebaseline`` (optionally of one ``sensor``) of one twin's models."""

    twin_id: Annotated[str, msgspec.Meta(pattern=TWIN_ID_PATTERN)]
    action: Literal["reset", "rebaseline"]
    requested_at: str
    v: Literal[1] = 1
    requested_by: str = ""
    sensor: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    reason: Annotated[str, msgspec.Meta(max_length=2000)] = ""


def encode(rec: ControlRecord) -> bytes:
    return msgspec.json.encode(rec)


def decode(value: bytes) -> ControlRecord:
    """Raises ``msgspec.ValidationError``/``DecodeError`` on a bad record (send it to the DLQ)."""
    return msgspec.json.decode(value, type=ControlRecord)
