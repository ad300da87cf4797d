"""Malformed messages land in the DLQ with a reason; valid ones between them all land."""

from __future__ import annotations

import orjson
import pytest

from tests.dlq_helpers import Case, envelope, run_corpus

pytestmark = pytest.mark.integration


def malformed(twin: str) -> list[Case]:
    """At least 20 kinds of malformed messages, with their expected reason."""
    k = twin.encode()
    base = envelope(twin, 999)

    def with_(**over) -> bytes:
        return orjson.dumps({**base, **over})

    def without(field: str) -> bytes:
        return orjson.dumps({f: v for f, v in base.items() if f != field})

    return [
        Case("truncated json", k, b'{"v":1,"twin_id":', "bad_json"),
        Case("not json", k, b"hello world", "bad_json"),
        Case("non utf-8", k, b"\xff\xfe\xfd\x00garbage", "bad_json"),
        Case("NaN literal", k, orjson.dumps(base).replace(b"1999.0", b"NaN"), "bad_json"),
        Case("empty value", k, b"", "bad_json"),
        Case("tombstone", k, None, "schema"),
        Case("json array", k, b"[1,2,3]", "schema"),
        Case("json number", k, b"42", "schema"),
        Case("missing twin_id", k, without("twin_id"), "schema"),
        Case("missing ts", k, without("ts"), "schema"),
        Case("missing readings", k, without("readings"), "schema"),
        Case("missing seq", k, without("seq"), "schema"),
        Case("wrong version", k, with_(v=2), "schema"),
        Case("ts not a date", k, with_(ts="yesterday"), "schema"),
        Case("ts without zone", k, with_(ts="2026-11-25T08:00:00"), "schema"),
        Case("reading is string", k, with_(readings={"rpm": "fast"}), "schema"),
        Case("reading is a list", k, with_(readings={"rpm": [1]}), "schema"),
        Case("reading overflows to inf", k, orjson.dumps(base).replace(b"1999.0", b"1e999"), "schema"),
        Case("empty readings", k, with_(readings={}), "schema"),
        Case("negative seq", k, with_(seq=-5), "schema"),
        Case("seq is string", k, with_(seq="7"), "schema"),
        Case("bad quality", k, with_(quality="great"), "schema"),
        Case("unknown field", k, with_(extra="x"), "schema"),
        Case("sql in twin_id", k, with_(twin_id="x'; DROP TABLE telemetry;--"), "schema"),
        Case("deep nesting", k, b"[" * 5000 + b"]" * 5000, "schema"),
        Case("huge payload", k, with_(readings={"rpm": 1.0}, pad="x" * 100_000), "too_large"),
        Case("far future ts", k, with_(ts="2099-01-01T00:00:00Z"), "ts_future"),
        Case("ancient ts", k, with_(ts="1970-01-02T00:00:00Z"), "ts_too_old"),
        Case("key differs from twin_id", b"someone-else", orjson.dumps(base), "key_mismatch"),
    ]


def test_malformed_messages_go_to_dlq_and_valid_ones_land(settings, unique):
    twin = f"dlq-{unique}"
    cases = malformed(twin)
    assert len({c.kind for c in cases}) >= 20
    run_corpus(settings, twin, cases)
