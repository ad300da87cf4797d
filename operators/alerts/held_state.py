"""How the alerts flow's reorder buffer pickles: cheaply, and in a form every version loads.

The reorder buffer (:class:`~operators.alerts.ordering.OrderedTwinAlerts`) holds
``reorder_window_s`` of a twin's model outputs, and Bytewax pickles the state of every twin the
flow touched at the end of every epoch: 30 s of outputs at 20 readings/s, pickled record by record,
cost about 1.4 ms of CPU per twin and epoch while the flow waits (``python -m benchmarks.alerts``).
:func:`held_state` gives the buffer as pickle should store it: the model outputs as one msgpack
array per record type (each record's field values in order, encoded once: at the first snapshot
that holds it; the buffer keeps the bytes until it releases the record) and the other entries as
they are, put back together at load by calls of functions every version has (msgspec's decoder,
stored under its own name ``msgspec._core.msgpack_decode``, the record class, ``zip``, ``map``,
``sorted``). Unpickling gives the sorted list of the same ``(ts, rank, arrival, record)`` entries —
a sorted list is a heap — in this version and in earlier ones alike.

A record whose datetimes are not in UTC pickles as it is: msgpack keeps the instant, not the UTC
offset, and the offset is part of an alert's id.

>>> import pickle
>>> from datetime import UTC, datetime, timedelta, timezone
>>> from operators.records.alerts import AnomalyScore
>>> t0 = datetime(2026, 12, 5, tzinfo=UTC)
>>> held = [(t0 + timedelta(seconds=i), 1, i, AnomalyScore("p1", t0 + timedelta(seconds=i), 0.5, 3.0, False,
...                                                            {"temp": 1.0})) for i in range(3)]
>>> held.append((t0, 1, 3, AnomalyScore("p1", t0.astimezone(timezone(timedelta(hours=1))), 9.0, 3.0, True)))
>>> back = pickle.loads(pickle.dumps(held_state(held, {})))
>>> back == sorted(held), back[1][3].ts.tzinfo  # the same entries; the one at +01:00 keeps its offset
(True, datetime.timezone(datetime.timedelta(seconds=3600)))
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from datetime import UTC
from operator import attrgetter, itemgetter
from typing import Any

import msgspec

from operators.pickled import PickledCall
from operators.records.alerts import AnomalyScore, FailurePrediction, ForecastPoint

Entry = tuple[Any, int, int, Any]
"""A held entry: ``(ts, rank, arrival, record)``."""

_encode = msgspec.msgpack.Encoder().encode
_astuple = msgspec.structs.astuple
_ts = attrgetter("ts")
_tzinfo = attrgetter("tzinfo")
_arrival, _record = itemgetter(2), itemgetter(3)


def _datetime_fields(cls: type) -> list[str]:
    """The fields of a record type that hold a datetime (or None)."""

    def is_time(t: Any) -> bool:
        if isinstance(t, msgspec.inspect.UnionType):
            return any(is_time(u) for u in t.types)
        return isinstance(t, msgspec.inspect.DateTimeType)

    return [f.name for f in msgspec.inspect.type_info(cls).fields if is_time(f.type)]  # type: ignore[attr-defined]


_COMPACT: dict[type, list[Callable[[Any], Any]]] = {
    cls: [attrgetter(name) for name in _datetime_fields(cls)]
    for cls in (AnomalyScore, ForecastPoint, FailurePrediction)
}
"""The record types stored compactly (the model outputs: nearly all of what is held), with
getters of their datetime fields."""


def _in_utc(records: list[Any], times: list[Callable[[Any], Any]]) -> bool:
    """Whether every datetime of the records is in UTC (or None); C loops, no Python call per record."""
    return all(set(map(_tzinfo, filter(None, map(get, records)))) <= {UTC} for get in times)


def _entries(
    held: list[Entry], packed: dict[int, bytes]
) -> tuple[dict[type, tuple[list[Entry], list[int]]], list[Entry]]:
    """The entries to store compactly, by record type with their arrivals, their records encoded
    into ``packed`` if they were not yet, and the others (C loops: no Python call per entry in the
    common case). A record type has one rank (``operators.alerts.ordering``)."""
    types = list(map(type, map(_record, held)))
    groups: dict[type, tuple[list[Entry], list[int]]] = {}
    plain: list[Entry] = []
    for cls in set(types):
        entries = list(itertools.compress(held, map(operator.is_, types, itertools.repeat(cls))))
        times = _COMPACT.get(cls)
        if times is None:
            plain += entries
            continue
        arrivals = list(map(_arrival, entries))
        new = list(itertools.compress(entries, map(operator.not_, map(packed.__contains__, arrivals))))
        utc = new if _in_utc(list(map(_record, new)), times) else [e for e in new if _in_utc([e[3]], times)]
        packed.update(zip(map(_arrival, utc), map(_encode, map(_astuple, map(_record, utc))), strict=True))
        if len(utc) == len(new):
            groups[cls] = entries, arrivals
        else:  # rare: records at another UTC offset stay as they are
            kept = list(map(packed.__contains__, arrivals))
            plain += itertools.compress(entries, map(operator.not_, kept))
            if any(kept):
                groups[cls] = list(itertools.compress(entries, kept)), list(itertools.compress(arrivals, kept))
    return groups, plain


def held_state(held: list[Entry], packed: dict[int, bytes]) -> PickledCall:
    """The reorder buffer's entries as pickle should store them (see the module's docstring);
    loads as ``sorted(held)``.

    ``packed`` (arrival → the record's msgpack bytes) keeps the encoded records for the next
    snapshots: a record held for 30 s is in six of them and encoded once. The caller removes a
    released entry's bytes from it."""
    groups, plain = _entries(held, packed)
    parts = []
    for cls, (entries, arrivals) in groups.items():
        blob = b"\xdd" + len(arrivals).to_bytes(4, "big") + b"".join(map(packed.__getitem__, arrivals))  # array32
        records = PickledCall(list, PickledCall(itertools.starmap, cls, PickledCall(msgspec.msgpack.decode, blob)))
        rank = PickledCall(itertools.repeat, entries[0][1])
        parts.append(PickledCall(zip, PickledCall(map, _ts, records), rank, arrivals, records))
    return PickledCall(sorted, PickledCall(itertools.chain, *parts, plain))
