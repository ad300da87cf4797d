"""Abusive and malformed telemetry messages, each with the dead-letter reason it must get.

Used by tests/integration/test_hostile_input.py on top of the basic malformed set of
tests/integration/test_dead_letters.py. The twin must be in the flow's twin registry;
``{twin}-ghost`` must not be. Valid messages with seq 1, 2, … are interleaved by
:func:`tests.dlq_helpers.run_corpus`, which the duplicate-seq cases rely on.
"""

from __future__ import annotations

import orjson

from tests.dlq_helpers import Case, envelope


def abusive(twin: str) -> list[Case]:
    k = twin.encode()
    base = envelope(twin, 999)
    raw = orjson.dumps(base)

    def with_(**over) -> bytes:
        return orjson.dumps({**base, **over})

    ghost = f"{twin}-ghost"
    first = orjson.dumps(envelope(twin, 1))
    reordered = envelope(twin, 1)
    reordered["readings"] = dict(reversed(list(reordered["readings"].items())))
    return [
        # identity and keys
        Case("unknown twin", ghost.encode(), orjson.dumps({**base, "twin_id": ghost}), "unknown_twin"),
        Case("oversized key (10 KB)", b"k" * 10_000, raw, "key_too_large"),
        Case("key one byte too long", b"k" * 129, raw, "key_too_large"),
        Case("non-utf-8 key", b"\xff\xfe\xfd", raw, "key_mismatch"),
        Case("twin_id too long, no key", None, with_(twin_id="t" * 129), "schema"),
        Case("NUL byte in twin_id", k, with_(twin_id="pu\x00mp"), "schema"),
        Case("homoglyph twin_id", k, with_(twin_id=twin.replace("h", "һ")), "schema"),
        Case("twin_id is a number", k, with_(twin_id=42), "schema"),
        # duplicates: valid seq 1 was sent before these
        Case(
            "duplicate seq, different content",
            k,
            orjson.dumps(envelope(twin, 1, quality="bad")),
            "duplicate_seq",
        ),
        Case(
            "duplicate seq, different ts",
            k,
            orjson.dumps({**envelope(twin, 1), "ts": base["ts"]}),
            "duplicate_seq",
        ),
        Case("duplicate seq, identical bytes", k, first, None),
        Case("duplicate seq, same content reordered", k, orjson.dumps(reordered), None),
        # SQL-looking strings
        Case("SQL as whole payload", k, b"'; DROP TABLE telemetry; --", "bad_json"),
        Case("SQL in sensor name", k, with_(readings={"rpm'); DELETE FROM telemetry;--": 1.0}), "schema"),
        Case("SQL in source", k, with_(source="mqtt' OR '1'='1"), "schema"),
        Case("SQL in quality", k, with_(quality="good'; --"), "schema"),
        # numbers
        Case("Infinity literal", k, raw.replace(b"1999.0", b"Infinity"), "bad_json"),
        Case("-Infinity literal", k, raw.replace(b"1999.0", b"-Infinity"), "bad_json"),
        Case("-1e999 reading", k, raw.replace(b"1999.0", b"-1e999"), "schema"),
        Case("seq above int64", k, with_(seq=2**63), "schema"),
        Case("seq 1e400", k, raw.replace(b'"seq":999', b'"seq":1e400'), "schema"),
        Case("seq is a float", k, with_(seq=1.5), "schema"),
        Case("seq is a bool", k, with_(seq=True), "schema"),
        Case("version as string", k, with_(v="1"), "schema"),
        # readings
        Case("257 readings", k, with_(readings={f"s{i}": 1.0 for i in range(257)}), "schema"),
        Case("3000 readings", k, with_(readings={f"s{i}": 1.0 for i in range(3000)}), "schema"),
        Case("sensor name too long", k, with_(readings={"s" * 65: 1.0}), "schema"),
        Case("empty sensor name", k, with_(readings={"": 1.0}), "schema"),
        Case("reading is an object", k, with_(readings={"rpm": {"value": 1.0}}), "schema"),
        Case("readings is a list", k, with_(readings=[1.0, 2.0]), "schema"),
        Case("readings is null", k, with_(readings=None), "schema"),
        Case("deep nesting in a reading", k, raw.replace(b"1999.0", b"[" * 3000 + b"]" * 3000), "schema"),
        Case("deeply nested objects", k, b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "schema"),
        # strings and sizes
        Case("60 KB quality string", k, with_(quality="q" * 60_000), "schema"),
        Case("control character in source", k, with_(source="te\nst"), "schema"),
        Case("1.5 MB message", k, with_(pad="x" * 1_500_000), "too_large"),
        Case("70 KB of whitespace around JSON", k, b" " * 70_000 + raw, "too_large"),
        # timestamps
        Case("ts as epoch number", k, with_(ts=1764057600), "schema"),
        Case("ts invalid calendar date", k, with_(ts="2026-02-30T00:00:00Z"), "schema"),
        Case("ts leap second", k, with_(ts="2026-06-30T23:59:60Z"), "schema"),
        Case("ts offset +25:00", k, with_(ts="2026-11-25T08:00:00+25:00"), "schema"),
        Case("ts year 1", k, with_(ts="0001-01-01T00:00:00Z"), "ts_too_old"),
        Case("ts year 9999", k, with_(ts="9999-12-31T23:59:59Z"), "ts_future"),
        Case("ts an hour ahead", k, with_(ts="2999-01-01T00:00:00+14:00"), "ts_future"),
        # not JSON, or not one JSON object
        Case("JSON null", k, b"null", "schema"),
        Case("empty object", k, b"{}", "schema"),
        Case("whitespace only", k, b"   \n\t ", "bad_json"),
        Case("UTF-8 BOM", k, b"\xef\xbb\xbf" + raw, "bad_json"),
        Case("comment before JSON", k, b"/* hi */" + raw, "bad_json"),
        Case("trailing garbage", k, raw + b"x", "bad_json"),
        Case("two JSON objects", k, raw + raw, "bad_json"),
        Case("lone surrogate escape", k, raw.replace(b'"source":"test"', b'"source":"\\ud800"'), "bad_json"),
        Case("latin-1 bytes in a string", k, raw.replace(b'"test"', b'"t\xe9st"'), "bad_json"),
    ]
