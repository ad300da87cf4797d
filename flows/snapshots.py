"""Bytewax state snapshots as pickled bytes, shared by the flows' stateful steps.

Bytes are immutable, so Bytewax stores them as they are; an object snapshot would be deep-copied
at every epoch (a pickle round trip of the whole state). A snapshot written as an object by an
older version still resumes.

>>> from_snapshot(to_snapshot({"speed": 1.0})), from_snapshot({"old": "object"}), from_snapshot(None)
({'speed': 1.0}, {'old': 'object'}, None)
"""

from __future__ import annotations

import pickle
from typing import Any


def to_snapshot(state: Any) -> bytes:
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def from_snapshot(resume: bytes | Any | None) -> Any:
    """The state from a snapshot: bytes are unpickled, an old object snapshot is used as it is."""
    return pickle.loads(resume) if isinstance(resume, bytes) else resume
