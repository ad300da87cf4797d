"""Sparkplug B payloads ↔ :class:`operators.devices.sparkplug_session.Metric` (Google protobuf; the message classes are
compiled from ``sparkplug_b.proto`` by ``make setup`` — scripts/sparkplug-proto.sh).

>>> raw = encode_payload([("Node Control/Rebirth", BOOLEAN, True)], seq=None, ts_ms=1000)
>>> ts, seq, (m,) = decode_payload(raw)
>>> ts, seq, m.name, m.datatype, m.value, m.is_null
(1000, None, 'Node Control/Rebirth', 11, True, False)
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError

from operators.devices.sparkplug_session import BOOLEAN, DOUBLE, FLOAT, INT64, NUMERIC, TEXTUAL, Metric

try:
    from connectors.sparkplug import sparkplug_b_pb2 as pb
except ImportError as exc:  # pragma: no cover - a checkout without `make setup`
    raise ImportError(
        "connectors/sparkplug/sparkplug_b_pb2.py is missing: run `make setup` (it compiles sparkplug_b.proto)"
    ) from exc


class BadPayload(ValueError):
    """Bytes that are not a Sparkplug B payload."""


def _quality(m: Any) -> int | None:
    if not m.HasField("properties"):
        return None
    props = m.properties
    for key, value in zip(props.keys, props.values, strict=False):
        if key.lower() == "quality":
            which = value.WhichOneof("value")
            return int(getattr(value, which)) if which in ("int_value", "long_value") else None
    return None


def decode_payload(raw: bytes) -> tuple[int | None, int | None, list[Metric]]:
    """(timestamp ms, seq, metrics) of a payload; :class:`BadPayload` when it does not decode."""
    p = pb.Payload()
    try:
        p.ParseFromString(raw)
    except DecodeError as exc:
        raise BadPayload(f"not a Sparkplug B payload: {exc}") from None
    metrics = []
    for m in p.metrics:
        which = m.WhichOneof("value")
        metrics.append(
            Metric(
                m.name if m.HasField("name") else None,
                m.alias if m.HasField("alias") else None,
                m.timestamp if m.HasField("timestamp") else None,
                m.datatype if m.HasField("datatype") else None,
                getattr(m, which) if which is not None else None,
                m.is_null or which is None,
                _quality(m),
            )
        )
    return (
        p.timestamp if p.HasField("timestamp") else None,
        p.seq if p.HasField("seq") else None,
        metrics,
    )


def encode_payload(metrics: list[tuple[str, int | None, Any]], *, seq: int | None, ts_ms: int) -> bytes:
    """A payload of (name, datatype, value) metrics (commands: NCMD/DCMD)."""
    p = pb.Payload()
    p.timestamp = ts_ms
    if seq is not None:
        p.seq = seq
    for name, datatype, value in metrics:
        m = p.metrics.add()
        m.name = name
        m.timestamp = ts_ms
        if datatype is not None:
            m.datatype = datatype
        if datatype == BOOLEAN or isinstance(value, bool):
            m.boolean_value = bool(value)
        elif datatype == FLOAT:
            m.float_value = float(value)
        elif datatype in (DOUBLE, None):
            m.double_value = float(value)
        elif datatype in NUMERIC:
            wide = datatype in (INT64, 8, 13)
            v = round(value)
            if v < 0:
                v += 2**64 if wide else 2**32
            if wide:
                m.long_value = v
            else:
                m.int_value = v
        elif datatype in TEXTUAL:
            m.string_value = str(value)
        else:
            raise ValueError(f"metric {name!r}: cannot write datatype {datatype}")
    return p.SerializeToString()
