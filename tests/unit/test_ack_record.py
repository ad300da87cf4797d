"""twin.acks has one record type: what a bridge writes is what the twin flow and the CLI read."""

from datetime import UTC, datetime

import pytest

from operators.records import commands
from operators.records import twin as twin_records
from operators.records.envelope import Rejected

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_bridge_ack_round_trips_through_the_twin_flow_decoder() -> None:
    cmd = commands.Command("p1:3:rpm", "p1", "rpm", 1200.0, issued_at=NOW)
    ack = commands.make_ack(cmd, "applied", source="mqtt", now=NOW)
    assert twin_records.Ack is commands.Ack
    assert twin_records.decode_ack(commands.encode_ack(ack)) == ack
    assert (ack.twin_id, ack.parameter, ack.applied_at, ack.source) == ("p1", "rpm", NOW, "mqtt")


def test_a_minimal_device_ack_is_read_by_both_and_a_naive_time_is_refused() -> None:
    minimal = b'{"command_id":"p1:3:rpm","status":"failed","error":"busy"}'
    assert commands.decode_ack(minimal) == twin_records.decode_ack(minimal)
    assert twin_records.decode_ack(minimal).applied_at is None
    with pytest.raises(Rejected):
        twin_records.decode_ack(b'{"command_id":"c","status":"applied","applied_at":"2026-01-01T00:00:00"}')
