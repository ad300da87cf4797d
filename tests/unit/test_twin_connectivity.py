"""A twin's connectivity: online on good readings, offline on no-communication statuses, deaths and silence."""

from __future__ import annotations

from types import SimpleNamespace

import msgspec

from operators.records.twin import Reported
from operators.twin.connectivity import UNREACHABLE, Connectivity
from operators.twin.inputs import InputTopics, ReadingRules, decode_batch
from operators.twin.reconcile import Reconciler
from operators.twin.resume import state_from_document
from operators.twin.state import StateChange, Status
from operators.twin.sync_strategy import TwinPolicy
from tests.twin_helpers import Run, alerts, at, changes, commands, desired, reading

TOPICS = InputTopics("raw", "desired", "acks")


def conn(ch: StateChange) -> Connectivity:
    """The connectivity of a published version, as the document carries it (JSON)."""
    return msgspec.json.decode(ch.snapshot["connectivity"], type=Connectivity)


def _raw(body: str, offset: int = 1) -> SimpleNamespace:
    return SimpleNamespace(key=b"p1", value=body.encode(), topic="raw", partition=0, offset=offset, timestamp=(1, 0))


def _env(readings: str, extra: str = "", seq: int = 1, source: str = "opcua") -> SimpleNamespace:
    return _raw(
        f'{{"v":1,"twin_id":"p1","ts":"2026-01-01T00:00:0{seq}Z","seq":{seq},"source":"{source}",'
        f'"readings":{readings}{extra}}}',
        seq,
    )


def _events(*messages: SimpleNamespace) -> list[Reported]:
    return [ev for _twin, ev in decode_batch(list(messages), TOPICS, ReadingRules()).events]  # type: ignore[misc]


def test_a_no_communication_status_or_a_false_online_reading_is_an_unreachable_event() -> None:
    nocomm, death, birth = _events(
        _env('{"speed":null}', ',"status":{"speed":"BadNoCommunication"}', 1),
        _env('{"online":false}', "", 3, "mqtt"),
        _env('{"online":true}', "", 4, "mqtt"),
    )
    assert (nocomm.quality, nocomm.values, nocomm.reason) == (UNREACHABLE, {}, "opcua BadNoCommunication on p1.speed")
    assert death.quality == UNREACHABLE and death.values == {"online": False} and "online = false" in death.reason
    assert birth.quality == 0 and birth.reason is None


def test_bad_sensor_status_is_not_unreachable_and_good_values_ride_with_the_reason() -> None:
    (gateway,) = _events(
        _env('{"temp":null}', ',"status":{"temp":"BadSensorFailure"}', 1),
        _env('{"speed":null,"temp":5.0}', ',"status":{"speed":"BadGatewayTargetNoResponse"}', 2, "modbus"),
    )
    assert gateway.quality == UNREACHABLE and gateway.values == {"temp": 5.0}
    assert gateway.reason == "modbus BadGatewayTargetNoResponse on p1.speed"


def test_unknown_then_online_then_offline_and_back_with_versions_and_status() -> None:
    run = Run(Reconciler(TwinPolicy()))
    assert run.state.connectivity.state == "unknown"
    (ch,) = changes(run(reading(0, 100.0)))
    assert conn(ch).state == "online" and ch.change["fields"]["connectivity"] == [
        "unknown",
        "online",
    ]
    run(reading(1, 100.0))  # the fast path: nothing new
    (ch,) = changes(run(Reported(at(2), 2, "opcua", {}, UNREACHABLE, "opcua BadNoCommunication on t1.speed")))
    assert run.state.status is Status.OFFLINE and ch.snapshot["status"] == "offline"
    assert conn(ch).since == at(2) and conn(ch).reason.startswith("opcua Bad")
    assert run.state.reported["speed"] == (100.0, at(1))  # the last value is kept, the twin says it is old
    assert not changes(run(Reported(at(3), 3, "opcua", {}, UNREACHABLE, "again")))  # still offline: no version
    (ch,) = changes(run(reading(4, 100.0)))
    assert run.state.status is Status.SYNCHRONIZED and ch.change["fields"]["connectivity"] == ["offline", "online"]


def test_silence_longer_than_offline_after_s_takes_the_twin_offline_on_a_clock_tick() -> None:
    r = Reconciler(TwinPolicy(), offline_after_s=60)
    run = Run(r)
    run(reading(0, 100.0))
    run(reading(10, 100.0))
    assert r.next_due(run.state) == at(70)
    assert not changes(run(at(69)))
    assert r.next_due(run.state) == at(70)
    (ch,) = changes(run(at(70)))
    assert ch.snapshot["status"] == "offline" and conn(ch).since == at(10)
    assert conn(ch).reason == "no reading for 60 s (twin.offline_after_s)"
    assert r.next_due(run.state) is None  # offline: no silence timer
    run(reading(80, 100.0))
    assert run.state.status is Status.SYNCHRONIZED and r.next_due(run.state) == at(140)
    assert Reconciler(TwinPolicy()).next_due(run.state) is None  # offline_after_s = 0: never by silence


def test_commands_to_an_offline_device_are_held_and_sent_when_it_is_back() -> None:
    policy = {"defaults": {"strategy": "digital_wins", "tolerance": 1.0, "hold_time_s": 0}}
    run = Run(Reconciler(TwinPolicy.model_validate(policy)))
    run(reading(0, 100.0))
    run(Reported(at(1), 1, "modbus", {}, UNREACHABLE, "modbus BadGatewayTargetNoResponse on t1.speed"))
    out = run(desired(2, 120.0))
    assert not commands(out) and changes(out)[0].snapshot["status"] == "offline"
    assert run.state.desired["speed"][0] == 120.0
    out = run(reading(3, 100.0))
    (cmd,) = commands(out)
    assert cmd.value == 120.0 and run.state.status is Status.DESYNCED


def test_a_resumed_twin_keeps_its_connectivity() -> None:
    run = Run(Reconciler(TwinPolicy()))
    run(reading(0, 100.0))
    (ch,) = changes(run(Reported(at(1), 1, "opcua", {}, UNREACHABLE, "why")))
    doc = {**ch.snapshot, "connectivity": {"state": "offline", "since": at(1).isoformat(), "reason": "why"}}
    st = state_from_document(doc, TwinPolicy().rules_for("t1"))
    assert (st.connectivity.state, st.connectivity.since, st.connectivity.reason) == ("offline", at(1), "why")
    assert st.status is Status.OFFLINE


def test_an_outage_longer_than_the_hold_time_is_escalated_once_and_ended_when_readings_return() -> None:
    r = Reconciler(TwinPolicy(), offline_after_s=0, offline_alert_after_s=30)
    run = Run(r)
    run(reading(0, 100.0))
    out = run(Reported(at(5), 1, "opcua", {}, UNREACHABLE, "opcua BadNoCommunication on t1.speed"))
    assert not alerts(out) and r.next_due(run.state) == at(35)
    assert not alerts(run(at(34)))
    (ev,) = alerts(run(at(35)))
    assert (ev.kind, ev.detail["since"], ev.detail["reason"]) == (
        "offline",
        at(5),
        "opcua BadNoCommunication on t1.speed",
    )
    assert ev.version == run.state.version and r.next_due(run.state) is None
    assert not alerts(run(at(60)))  # once per outage
    (ev,) = alerts(run(reading(70, 100.0)))
    assert ev.kind == "online" and ev.detail["since"] == at(70)
    # A short outage sends nothing.
    run(Reported(at(80), 2, "opcua", {}, UNREACHABLE, "why"))
    assert not alerts(run(reading(90, 100.0)))


def test_the_alerts_flow_reads_offline_and_online_as_a_device_offline_condition() -> None:
    from operators.alerts.lifecycle import TwinAlerts
    from operators.alerts.rules import AlertRules
    from operators.records.alerts import desync_escalation
    from operators.records.twin import DesyncEvent, encode

    def record(kind: str, s: float) -> bytes:
        return encode(DesyncEvent("t1", kind, at(s), 3, {"since": at(0), "reason": "why"}))  # type: ignore[arg-type]

    rec = desync_escalation(record("offline", 60))
    assert rec is not None and rec.alert == "device_offline" and not rec.in_sync
    lifecycle = TwinAlerts("t1", AlertRules())
    (opened,) = lifecycle.apply(rec)
    assert (opened.kind, opened.state, opened.severity) == ("device_offline", "open", "major")
    assert "device cannot be reached: why" in opened.summary
    (resolved,) = lifecycle.apply(desync_escalation(record("online", 90)))
    assert (resolved.kind, resolved.state) == ("device_offline", "resolved")


def test_each_type_goes_offline_after_its_own_silence() -> None:
    policy = TwinPolicy.model_validate(
        {
            "types": {
                "plc": {"match": ["plc-*"], "offline_after_s": 10, "offline_alert_after_s": 15},
                "battery": {"match": ["bat-*"], "offline_after_s": 2700},
            },
            "twins": {"bat-off": {"offline_after_s": 0}},
        }
    )
    r = Reconciler(policy, offline_after_s=60, offline_alert_after_s=30)  # the fleet-wide [twin] values
    plc, bat, off, other = Run(r, "plc-1"), Run(r, "bat-1"), Run(r, "bat-off"), Run(r, "valve-1")
    for run in (plc, bat, off, other):
        run(reading(0, 100.0))
    assert [r.next_due(run.state) for run in (plc, bat, off, other)] == [at(10), at(2700), None, at(60)]

    # The same 10 s of silence: the PLC is offline (its type's 10 s), the battery sensor is not.
    (ch,) = changes(plc(at(10)))
    assert conn(ch).state == "offline" and conn(ch).since == at(0)
    assert conn(ch).reason == "no reading for 10 s (twin.policy.types.plc.offline_after_s)"
    assert not changes(bat(at(10))) and bat.state.connectivity.state == "online"
    # Its alert after its type's 15 s offline, not the fleet's 30 s.
    assert r.next_due(plc.state) == at(15)
    (ev,) = alerts(plc(at(15)))
    assert ev.kind == "offline" and ev.detail["duration_s"] == 15.0

    # An hour of silence: the battery sensor too; the twin set to 0 never by silence; no type: the fleet's 60 s.
    (ch,) = changes(bat(at(3600)))
    assert conn(ch).reason == "no reading for 2700 s (twin.policy.types.battery.offline_after_s)"
    assert not changes(off(at(3600))) and off.state.connectivity.state == "online"
    (ch,) = changes(other(at(3600)))
    assert conn(ch).reason == "no reading for 60 s (twin.offline_after_s)"


# ---------------------------------------------------------------- some sensors unreachable


def _lost(s: float, *sensors: str, source: str = "opcua", **good: float) -> Reported:
    """A gateway's reading: ``sensors`` BadNoCommunication, ``good`` values alongside."""
    return Reported(at(s), 0, source, good, UNREACHABLE, f"{source} BadNoCommunication on t1.{sensors[0]}", sensors)


def test_an_envelope_names_its_unreachable_sensors() -> None:
    (ev,) = _events(_env('{"speed":null,"temp":5.0}', ',"status":{"speed":"BadNoCommunication"}', 2))
    assert ev.lost == ("speed",) and ev.values == {"temp": 5.0}
    (death,) = _events(_env('{"online":false}', "", 3, "mqtt"))
    assert death.lost == ()  # the whole device


def test_one_of_two_tags_lost_keeps_the_twin_online_without_a_version_per_notification() -> None:
    run = Run(Reconciler(TwinPolicy(), offline_alert_after_s=5))
    run(reading(0, 100.0, temp=20.0))
    (ch,) = changes(run(_lost(1, "temp")))
    assert conn(ch).state == "online" and conn(ch).unreachable == {"temp": at(1)}
    assert ch.change["fields"] == {"unreachable": [[], ["temp"]]} and ch.snapshot["status"] == "synchronized"
    for s in range(2, 60):  # the good tag every second, the bad one notified again and again
        out = run(reading(s, 100.0 + 10 * (s - 1))) + run(_lost(s + 0.5, "temp"))
        assert not alerts(out)  # only the new speed makes a version, the notifications none
        assert [c.change["fields"] for c in changes(out)] == [{"reported.speed": [80.0 + 10 * s, 90.0 + 10 * s]}]
    assert run.state.connectivity.state == "online" and run.state.connectivity.unreachable == {"temp": at(1)}
    assert run.state.connectivity.since == at(0)  # never flipped


def test_a_good_value_of_the_lost_sensor_takes_it_off_the_list_on_the_fast_path_too() -> None:
    run = Run(Reconciler(TwinPolicy()))
    run(reading(0, 100.0, temp=20.0))
    run(_lost(1, "temp"))
    assert not changes(run(reading(2, 100.0)))  # speed only: nothing new
    (ch,) = changes(run(reading(3, 100.0, temp=21.0)))
    assert conn(ch).unreachable == {} and ch.change["fields"]["unreachable"] == [["temp"], []]
    assert run.state.connectivity.state == "online"


def test_every_sensor_lost_is_offline_and_a_good_value_of_one_is_online_with_the_other_still_listed() -> None:
    r = Reconciler(TwinPolicy(), offline_alert_after_s=5)
    run = Run(r)
    run(reading(0, 100.0, temp=20.0))
    run(_lost(1, "temp"))
    (ch,) = changes(run(_lost(2, "speed")))
    assert conn(ch).state == "offline" and conn(ch).since == at(2) and ch.snapshot["status"] == "offline"
    assert conn(ch).unreachable == {"temp": at(1), "speed": at(2)}
    assert conn(ch).reason == "opcua BadNoCommunication on t1.speed"
    (ev,) = alerts(run(at(7)))
    assert ev.kind == "offline"
    out = run(reading(8, 100.0))  # speed answers: the device does
    (ch,) = changes(out)
    assert conn(ch).state == "online" and conn(ch).unreachable == {"temp": at(1)}
    assert [a.kind for a in alerts(out)] == ["online"]


def test_a_device_level_signal_is_offline_at_once_and_any_good_value_brings_it_back() -> None:
    run = Run(Reconciler(TwinPolicy()))
    run(reading(0, 100.0, temp=20.0))
    run(_lost(1, "temp"))
    (ch,) = changes(run(Reported(at(2), 2, "mqtt", {"online": False}, UNREACHABLE, "mqtt reported online = false")))
    assert conn(ch).state == "offline" and conn(ch).unreachable == {"temp": at(1)}  # the list is kept
    (ch,) = changes(run(_lost(3, "speed")))  # every sensor now: still offline since the death, both listed
    assert (conn(ch).state, conn(ch).since, sorted(conn(ch).unreachable)) == ("offline", at(2), ["speed", "temp"])
    assert not changes(run(Reported(at(3.5), 3, "mqtt", {"online": False}, UNREACHABLE, "again")))
    (ch,) = changes(run(reading(4, 100.0)))  # a good value of any sensor: the device answers again
    assert conn(ch).state == "online" and conn(ch).unreachable == {"temp": at(1)}


def test_silence_keeps_the_list_and_a_partly_lost_twin_resumes_and_reloads_it() -> None:
    r = Reconciler(TwinPolicy(), offline_after_s=10)
    run = Run(r)
    run(reading(0, 100.0, temp=20.0))
    (ch,) = changes(run(_lost(1, "temp")))
    doc = msgspec.json.decode(msgspec.json.encode(ch.snapshot))
    st = state_from_document(doc, TwinPolicy().rules_for("t1"))
    assert st.connectivity.state == "online" and st.connectivity.unreachable == {"temp": at(1)}
    (ch,) = changes(run(at(20)))
    assert conn(ch).state == "offline" and conn(ch).unreachable == {"temp": at(1)}
    # A document written before the list was kept loads as "no unreachable sensors".
    old = {**doc, "connectivity": {"state": "online", "since": at(0).isoformat(), "reason": "opcua reading"}}
    assert state_from_document(old, TwinPolicy().rules_for("t1")).connectivity.unreachable == {}


def test_a_snapshot_pickled_before_the_list_loads_without_unreachable_sensors() -> None:
    import pickle

    class ThreeFields:
        """A Connectivity as pickled before ``unreachable``: msgspec reduces a Struct to (class, field values)."""

        def __reduce__(self) -> tuple:
            return Connectivity, ("online", at(0), "mqtt reading")

    run = Run(Reconciler(TwinPolicy()))
    run(reading(0, 100.0))
    run.state.connectivity = ThreeFields()  # type: ignore[assignment]
    st = pickle.loads(pickle.dumps(run.state))
    assert st.connectivity == Connectivity("online", at(0), "mqtt reading", {})
    assert Reconciler(TwinPolicy()).apply(st, reading(1, 100.0)) == []  # the fast path, as before
