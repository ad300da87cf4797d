"""The OPC-UA bridge's notification grouping and the simulator's quick Variant type guess (no I/O)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from asyncua import ua
from asyncua.common.subscription import DataChangeEvent, DataChangeNotif, StatusChangeEvent, SubscriptionItemData

from connectors.bridges.mapping.loading import load_mapping
from connectors.opcua.bridge import OpcuaBridge
from connectors.sim.opcua_server import _quick_variant_types
from operators.records.envelope import decode
from twinflow.settings import Settings

MAPPING = """
[opcua]
endpoint = "opc.tcp://127.0.0.1:4840/unit/"
[[assets]]
twin_id = "pump-a"
type = "pump"
protocol = "opcua"
[assets.params]
speed_rpm = { node = "ns=2;s=pump-a.speed_rpm" }
temp_c = { node = "ns=2;s=pump-a.temp_c" }
[[assets]]
twin_id = "pump-b"
type = "pump"
protocol = "opcua"
[assets.params]
temp_c = { node = "ns=2;s=pump-b.temp_c" }
"""


class RecordingPublisher:
    """Stands in for the Kafka publisher: keeps what the bridge hands over."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    def put(self, topic: str, key: bytes, value: bytes, headers: list | None = None) -> None:
        self.records.append((topic, key, value))


class FakeSubscription:
    """Yields the given events, then waits (like a quiet subscription) until closed."""

    def __init__(self, events: list[Any]) -> None:
        self.events = events

    def __aiter__(self) -> FakeSubscription:
        return self

    async def __anext__(self) -> Any:
        if self.events:
            return self.events.pop(0)
        await asyncio.Event().wait()  # never set: only cancellation ends it


def change(
    handle: int, value: Any, ts: datetime, status: int = ua.StatusCodes.Good, vtype: ua.VariantType | None = None
) -> DataChangeEvent:
    variant = ua.Variant(value, vtype or (ua.VariantType.Double if isinstance(value, float) else None))
    dv = ua.DataValue(variant, StatusCode=ua.StatusCode(status), SourceTimestamp=ts)
    item = ua.MonitoredItemNotification(ClientHandle=handle, Value=dv)
    return DataChangeEvent(node=None, value=value, data=DataChangeNotif(SubscriptionItemData(), item))  # type: ignore[arg-type]


def make_bridge(tmp_path: Path, window_ms: float = 20.0) -> tuple[OpcuaBridge, RecordingPublisher]:
    path = tmp_path / "unit.toml"
    path.write_text(MAPPING)
    settings = Settings(bridge={"batch_window_ms": window_ms})
    publisher = RecordingPublisher()
    bridge = OpcuaBridge(settings, load_mapping(path), publisher=publisher, commands=False)  # type: ignore[arg-type]
    bridge.sessions["opcua"].handles.update(
        {1: ("pump-a", "speed_rpm"), 2: ("pump-a", "temp_c"), 3: ("pump-b", "temp_c")}
    )
    return bridge, publisher


async def consume_until_quiet(bridge: OpcuaBridge, events: list[Any], quiet_s: float = 0.2) -> None:
    """Run the bridge's consumer on ``events``; stop it once it has been idle for ``quiet_s``."""
    stop, lost = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(bridge._consume(bridge.sessions["opcua"], FakeSubscription(events), stop, lost))
    await asyncio.sleep(quiet_s)
    stop.set()
    await asyncio.wait_for(task, 5)


def envelopes(publisher: RecordingPublisher) -> list[dict]:
    out = []
    for topic, key, value in publisher.records:
        env = decode(value, key=key)  # valid envelope, key = twin_id
        assert topic == "telemetry.raw"
        out.append(orjson.loads(value) | {"ts": env.ts})
    return out


def test_values_of_one_twin_timestamp_and_quality_share_an_envelope(tmp_path: Path) -> None:
    bridge, publisher = make_bridge(tmp_path)
    t0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    t1 = t0 + timedelta(milliseconds=50)
    events = [
        change(1, 1450.0, t0),
        change(2, 65.2, t0),
        change(3, 40.0, t0, ua.StatusCodes.BadSensorFailure),
        change(1, 1451.0, t1),
        change(2, 65.3, t1, ua.StatusCodes.UncertainSensorNotAccurate),
        change(99, 1.0, t1),  # unknown client handle: not ours, ignored
    ]
    asyncio.run(consume_until_quiet(bridge, events))
    got = {(e["twin_id"], e["ts"], e["quality"]): e["readings"] for e in envelopes(publisher)}
    assert got == {
        ("pump-a", t0, "good"): {"speed_rpm": 1450.0, "temp_c": 65.2},
        ("pump-b", t0, "bad"): {"temp_c": 40.0},
        ("pump-a", t1, "good"): {"speed_rpm": 1451.0},
        ("pump-a", t1, "uncertain"): {"temp_c": 65.3},
    }
    assert bridge.values == 5 and bridge.envelopes == 4
    seqs = [e["seq"] for e in envelopes(publisher) if e["twin_id"] == "pump-a"]
    assert seqs == sorted(set(seqs))  # per-twin seq increases


def test_values_after_a_server_queue_overflow_are_counted_and_warned_once_per_item(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bridge, publisher = make_bridge(tmp_path)
    t0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    overflow = ua.StatusCodes.Good | 0x0480  # InfoType DataValue + Overflow: the server discarded values
    events = [
        change(1, 1.0, t0, overflow),
        change(1, 2.0, t0 + timedelta(seconds=1), overflow),
        change(2, 3.0, t0, overflow),
        change(3, 4.0, t0),
    ]
    with caplog.at_level("WARNING", logger="connectors.opcua.bridge"):
        asyncio.run(consume_until_quiet(bridge, events))
    assert bridge.overflows == 3
    warned = [r.getMessage() for r in caplog.records if "overflowed" in r.getMessage()]
    assert len(warned) == 2 and "pump-a.speed_rpm" in warned[0] and "queue_size" in warned[0]
    # The values themselves are good and forwarded: the loss was upstream, in the server.
    assert {e["quality"] for e in envelopes(publisher)} == {"good"} and bridge.values == 4


def test_naive_source_timestamps_are_taken_as_utc(tmp_path: Path) -> None:
    bridge, publisher = make_bridge(tmp_path)
    naive = datetime(2026, 11, 25, 8, 0, 0, 123000)
    asyncio.run(consume_until_quiet(bridge, [change(2, 61.0, naive)]))
    [env] = envelopes(publisher)
    assert env["ts"] == naive.replace(tzinfo=UTC)


def test_pending_readings_are_flushed_when_stopped_inside_the_window(tmp_path: Path) -> None:
    bridge, publisher = make_bridge(tmp_path, window_ms=60_000)  # the window never ends by itself
    ts = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    asyncio.run(consume_until_quiet(bridge, [change(1, 1400.0, ts), change(2, 60.0, ts)], quiet_s=0.1))
    [env] = envelopes(publisher)
    assert env["readings"] == {"speed_rpm": 1400.0, "temp_c": 60.0}


def test_a_bad_subscription_status_ends_consumption_after_flushing(tmp_path: Path) -> None:
    bridge, publisher = make_bridge(tmp_path, window_ms=60_000)
    ts = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    bad = StatusChangeEvent(notification=ua.StatusChangeNotification(Status=ua.StatusCode(ua.StatusCodes.BadTimeout)))
    events = [change(3, 41.0, ts), bad, change(3, 42.0, ts + timedelta(seconds=1))]

    async def scenario() -> None:
        # No stop and no lost connection: only the bad status may end it.
        await asyncio.wait_for(
            bridge._consume(bridge.sessions["opcua"], FakeSubscription(events), asyncio.Event(), asyncio.Event()), 5
        )

    asyncio.run(scenario())
    assert [e["readings"] for e in envelopes(publisher)] == [{"temp_c": 41.0}]


def test_an_error_while_consuming_is_raised_to_the_reconnect_loop(tmp_path: Path) -> None:
    bridge, _ = make_bridge(tmp_path)

    class Broken(FakeSubscription):
        async def __anext__(self) -> Any:
            raise ConnectionResetError("link gone")

    async def scenario() -> None:
        await asyncio.wait_for(
            bridge._consume(bridge.sessions["opcua"], Broken([]), asyncio.Event(), asyncio.Event()), 5
        )

    with pytest.raises(ConnectionResetError, match="link gone"):
        asyncio.run(scenario())


VALUES = [None, 0.0, -1.5, 1e300, float("nan"), True, False, 0, 7, -(2**40), "text", b"bytes", [1.0, 2.0], [3], ["a"]]
VALUES += [datetime(2026, 1, 1, tzinfo=UTC), ua.NodeId(5, 2), ua.LocalizedText("x"), ua.Float(1.5), ua.Int16(3)]


def test_quick_variant_type_guess_answers_like_asyncua(monkeypatch: pytest.MonkeyPatch) -> None:
    # asyncua's own method, even when a simulator in this process already installed the quick guess
    original = getattr(ua.Variant._guess_type, "original", ua.Variant._guess_type)
    monkeypatch.setattr(ua.Variant, "_guess_type", original)  # restored after the test
    expected = [ua.Variant(v).VariantType for v in VALUES]
    _quick_variant_types()
    assert ua.Variant._guess_type is not original
    _quick_variant_types()  # idempotent: wraps the original once
    assert [ua.Variant(v).VariantType for v in VALUES] == expected
    assert ua.MonitoredItemNotification().Value.Value == ua.Variant(None, ua.VariantType.Null)


def test_booleans_bad_status_without_value_texts_and_unsupported_types(tmp_path: Path) -> None:
    bridge, publisher = make_bridge(tmp_path)
    dead = []
    bridge.reject = lambda twin, payload, reason, detail, **kw: dead.append((twin, orjson.loads(payload), kw["field"]))
    t0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    events = [
        change(1, True, t0, vtype=ua.VariantType.Boolean),
        change(2, 12.5, t0),
        change(3, None, t0, ua.StatusCodes.BadSensorFailure, ua.VariantType.Null),
        change(1, "AUTO", t0 + timedelta(seconds=1), vtype=ua.VariantType.String),
        change(2, [1.0, 2.0], t0 + timedelta(seconds=1), vtype=ua.VariantType.Double),
    ]
    asyncio.run(consume_until_quiet(bridge, events))
    got = {(e["twin_id"], e["quality"]): e for e in envelopes(publisher) if e["readings"]}
    assert got["pump-a", "good"]["readings"] == {"speed_rpm": True, "temp_c": 12.5}
    failed = got["pump-b", "bad"]
    assert failed["readings"] == {"temp_c": None} and failed["status"] == {"temp_c": "BadSensorFailure"}
    texts = [e for e in envelopes(publisher) if e.get("text")]
    assert [t["text"] for t in texts] == [{"speed_rpm": "AUTO"}]
    assert [(t, d["variant_type"], f) for t, d, f in dead] == [("pump-a", "Double", "readings.temp_c")]
