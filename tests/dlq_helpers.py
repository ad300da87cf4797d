"""Run a corpus of bad messages, interleaved with valid ones, through the real telemetry flow.

Each bad message must reach the DLQ with its expected reason (or, for ``reason=None``, be
absorbed without a dead letter), and every valid message must land in PostgreSQL exactly once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import orjson
import psycopg

from tests.kafka_helpers import produce, read_topic, run_flow_to_end
from twinflow.settings import Settings


class Case(NamedTuple):
    kind: str
    key: bytes | None
    value: bytes | None
    reason: str | None  # None: absorbed (an identical redelivery), no dead letter


# One base time per test session, so an envelope built twice is byte-for-byte the same.
BASE_TS = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=60)


def envelope(twin: str, seq: int, **over) -> dict:
    """A valid envelope about a minute in the past; ts and readings depend on ``seq``."""
    ts = BASE_TS + timedelta(milliseconds=seq)
    body = {
        "v": 1,
        "twin_id": twin,
        "ts": ts.isoformat().replace("+00:00", "Z"),
        "seq": seq,
        "source": "test",
        "readings": {"rpm": 1000.0 + seq, "temp_c": 50.5},
    }
    body.update(over)
    return body


def valid_messages(twin: str, count: int) -> list[bytes]:
    """The valid envelopes with seq 1..count (bytes), as :func:`run_corpus` interleaves them."""
    return [orjson.dumps(envelope(twin, seq)) for seq in range(1, count + 1)]


def run_corpus(settings: Settings, twin: str, cases: list[Case], **producer_config) -> None:
    """valid₁ bad₁ valid₂ bad₂ … validₙ₊₁ → flow → assert DLQ records and database rows."""
    valid = valid_messages(twin, len(cases) + 1)
    messages: list[tuple[bytes | None, bytes | None]] = []
    for case, good in zip(cases, valid, strict=False):
        messages.append((twin.encode(), good))
        messages.append((case.key, case.value))
    messages.append((twin.encode(), valid[-1]))
    where = produce(settings, messages, **producer_config)
    bad_at = {where[2 * i + 1]: case for i, case in enumerate(cases)}

    run_flow_to_end(settings)

    dlq = read_topic(settings, settings.topics.dlq)
    found: dict[tuple[int, int], object] = {}
    for rec in dlq:
        origin = (int(rec.headers["dlq.partition"]), int(rec.headers["dlq.offset"]))
        assert origin not in found, f"two dead letters for one message at {origin}"
        found[origin] = rec
        case = bad_at.get(origin)
        assert case is not None, f"a valid message was dead-lettered: {rec.headers}"
        assert rec.headers["dlq.reason"].decode() == case.reason, (case.kind, rec.headers["dlq.detail"])
        assert rec.headers["dlq.detail"], case.kind
        assert rec.headers["dlq.topic"].decode() == settings.topics.raw
        datetime.fromisoformat(rec.headers["dlq.rejected_at"].decode())
        if "dlq.truncated_from" in rec.headers:
            assert int(rec.headers["dlq.truncated_from"]) == len(case.value), case.kind
            assert case.value.startswith(rec.value), case.kind
        else:
            assert rec.value == case.value, case.kind
    missing = [c.kind for at, c in bad_at.items() if c.reason is not None and at not in found]
    assert not missing, f"not in the DLQ: {missing}"

    with psycopg.connect(settings.postgres.conninfo()) as db:
        got = db.execute(
            "SELECT seq, sensor, value FROM telemetry WHERE twin_id = %s ORDER BY seq, sensor", (twin,)
        ).fetchall()
    expected = [
        (s, sensor, v) for s in range(1, len(valid) + 1) for sensor, v in (("rpm", 1000.0 + s), ("temp_c", 50.5))
    ]
    assert got == expected
