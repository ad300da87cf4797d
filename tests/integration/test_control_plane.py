"""The twin control plane from the outside (issue 13): the real CLI as a subprocess against the real
stack, with the twin flow and the plant simulator (OPC-UA pump through its bridge) running.

* a subject the policy denies is refused (exit ≠ 0, the reason), nothing for the twin reaches
  twin.commands, the device keeps its setpoint, the refusal is audited; an allowed change reaches
  the device and is audited; `audit verify` passes, and fails once an audit row is edited;
* unsigned and forged requests on twin.desired are refused; `twinflow command send` goes through
  the same gate; unknown twins, unknown parameters and physical_wins parameters are refused;
* `--expect-version V` with V from `twin show` succeeds while telemetry flows at 10 readings/s,
  a stale V is refused;
* maintenance the documented way (`twinflow twin mode`) is published on twin.status and shown by
  `twin show`; leaving it the same way;
* a restart without recovery and with a wiped recovery folder continues versions and changes no
  stored history row.

The module shares one twin flow (restarted on purpose at the end) to keep the time modest.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import psycopg
import pytest

from tests.db_helpers import superuser_conninfo
from tests.integration.control_plane_helpers import REPO, SETPOINT, ControlPlane, control_plane
from tests.integration.control_plane_helpers import audit as _audit
from tests.integration.control_plane_helpers import commands_for as _commands_for
from tests.integration.control_plane_helpers import state as _state
from tests.integration.plant_helpers import consume
from tests.kafka_helpers import read_topic
from tests.twin_fixtures import twin_db  # noqa: F401
from tests.twin_kafka import envelope, produce, query, wait_for
from twinflow.settings import Settings

pytestmark = pytest.mark.integration
POLICY = (
    '[[rule]]\nname = "operators run pumps"\nsubject = { roles = "operator" }\n'
    'modes = ["normal", "maintenance"]\n[rule.parameters]\nspeed_sp_rpm = { min = 0, max = 3000 }\n'
    "valve_pct = { min = 0, max = 100 }\n"
)


@pytest.fixture(scope="module")
def cp(plant, twin_db: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:  # noqa: F811
    twins = {plant.twin(p): {"parameters": {"speed_sp_rpm": SETPOINT}} for p in ("opcua", "mqtt")}
    with control_plane(plant, twin_db, tmp_path_factory.mktemp("control"), POLICY, {"twins": twins}) as plane:
        yield plane


def test_denied_is_refused_audited_and_never_reaches_the_device_allowed_is_applied(plant, cp: ControlPlane) -> None:
    s, twin = cp.s, plant.twin("opcua")
    machine = plant.sim.plant.machines[twin]
    before_sp = machine.speed_sp
    target = 1200.0 if before_sp > 1300 else 1450.0

    denied = cp.cli("mallory", "twin", "set-desired", twin, f"speed_sp_rpm={target}")
    assert denied.returncode == 3, denied.stdout + denied.stderr
    assert "denied: no_matching_rule" in denied.stderr and "mallory" in denied.stderr
    # Unsigned (a raw producer) and forged (signed by a key that is not ann's) requests: refused too.
    now = datetime.now(UTC).isoformat()
    unsigned = {"twin_id": twin, "values": {"speed_sp_rpm": target}, "author": "ann", "issued_at": now}
    produce(s, s.twin.desired_topic, [(twin.encode(), orjson.dumps(unsigned))])
    # Signed with a key no subject of this plant has (the local development key): unknown subject.
    stranger = cp.cli(None, "twin", "set-desired", twin, f"speed_sp_rpm={target}")
    assert stranger.returncode == 3 and "denied: unknown_subject" in stranger.stderr, stranger.stderr
    env = {**cp.env, "TWINFLOW_SECURITY__KEY_FILE": str(cp.keys["forger"]), "TWINFLOW_SECURITY__SUBJECT": "ann"}
    forged = subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", "twin", "set-desired", twin, f"speed_sp_rpm={target}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert forged.returncode == 3 and "denied: bad_signature" in forged.stderr, forged.stderr
    # `command send` is no way around the gate.
    sent = cp.cli("mallory", "command", "send", twin, "speed_sp_rpm", str(target))
    assert sent.returncode == 3 and "denied: no_matching_rule" in sent.stderr, sent.stdout + sent.stderr

    wait_for(
        "the unsigned request's refusal",
        lambda: [a for a in _audit(s, twin) if a["reason"] == "unsigned"],
    )
    time.sleep(2.0)  # the device would have had time to take a command
    assert _commands_for(s, twin) == []
    assert machine.speed_sp == before_sp
    assert _state(s, twin)["desired"].get("speed_sp_rpm") is None
    audit = _audit(s, twin)
    assert [(a["decision"], a["reason"]) for a in audit] == [
        ("deny", "no_matching_rule"),
        ("deny", "unsigned"),
        ("deny", "unknown_subject"),
        ("deny", "bad_signature"),
        ("deny", "no_matching_rule"),
    ]
    assert [a["actor"] for a in audit][:2] == ["mallory", "anonymous"] and audit[3]["actor"] == "ann"
    rejected = [orjson.loads(r.value) for r in read_topic(s, s.security.desired_rejected_topic)]
    assert len([r for r in rejected if r["twin_id"] == twin]) == 5
    assert query(s, "SELECT count(*) AS n FROM desired_rejections WHERE twin_id = %s", (twin,))[0]["n"] == 5

    allowed = cp.cli("ann", "twin", "set-desired", twin, f"speed_sp_rpm={target}", "--reason", "acceptance")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert f"applied: {twin} is at desired version 1" in allowed.stdout and "by ann" in allowed.stdout
    wait_for("the simulator to take the setpoint", lambda: abs(machine.speed_sp - target) < 1e-6, timeout=60)
    (cmd,) = _commands_for(s, twin)
    assert cmd["value"] == target
    audit = _audit(s, twin)
    assert (audit[-1]["actor"], audit[-1]["decision"], audit[-1]["new"]["values"]) == (
        "ann",
        "allow",
        {"speed_sp_rpm": target},
    )
    ok = cp.cli(None, "audit", "verify")
    assert ok.returncode == 0 and "audit chain intact" in ok.stdout, ok.stdout + ok.stderr

    # honest outcomes: unknown parameter, physical_wins parameter, unknown twin
    unknown = cp.cli("ann", "twin", "set-desired", twin, "speed=1200")
    assert unknown.returncode == 3 and "denied: parameter_not_allowed" in unknown.stderr, unknown.stderr
    unknown = cp.cli("ann", "twin", "set-desired", twin, "valve_pct=50")
    assert unknown.returncode == 3 and "denied: unknown_parameter" in unknown.stderr, unknown.stderr
    mb = plant.twin("modbus")
    physical = cp.cli("ann", "twin", "set-desired", mb, "speed_sp_rpm=1000")
    assert physical.returncode == 3 and "denied: physical_wins" in physical.stderr, physical.stderr
    ghost = cp.cli("ann", "twin", "set-desired", f"ghost-{uuid.uuid4().hex[:6]}", "speed_sp_rpm=1000")
    assert ghost.returncode == 3 and "denied: unknown_twin" in ghost.stderr, ghost.stderr
    ghost = cp.cli("ann", "alerts", "maintenance", f"ghost-{uuid.uuid4().hex[:6]}", "on")
    assert ghost.returncode == 3 and "denied: unknown_twin" in ghost.stderr, ghost.stderr

    # Tampering: a superuser edits an audit row; verify names it.
    with psycopg.connect(superuser_conninfo(s, s.postgres.dbname), autocommit=True) as su:
        su.execute("SET session_replication_role = replica")
        (victim,) = su.execute(
            "SELECT id FROM desired_audit WHERE twin_id = %s AND decision = 'allow' ORDER BY id LIMIT 1", (twin,)
        ).fetchone()
        su.execute("UPDATE desired_audit SET actor = 'mallory' WHERE id = %s", (victim,))
        try:
            broken = cp.cli(None, "audit", "verify")
            assert broken.returncode == 1 and f"row {victim}" in broken.stderr, broken.stdout + broken.stderr
        finally:
            su.execute("UPDATE desired_audit SET actor = 'ann' WHERE id = %s", (victim,))
    assert cp.cli(None, "audit", "verify").returncode == 0


def test_expect_version_works_on_a_live_twin_and_a_stale_one_is_refused(plant, cp: ControlPlane) -> None:
    s, twin = cp.s, plant.twin("mqtt")
    wait_for(f"a first state of {twin}", lambda: _state(s, twin), timeout=60)
    stop = threading.Event()

    def readings() -> None:  # 10 readings/s of noisy telemetry on top of the simulator's
        seq = 10**9
        while not stop.is_set():
            seq += 1
            value = 40.0 + (seq % 7) * 0.37
            env = envelope(twin, datetime.now(UTC), seq, {"noise_c": value}, source="test")
            produce(s, s.topics.raw, [(twin.encode(), env)])
            time.sleep(0.1)

    feeder = threading.Thread(target=readings, daemon=True)
    feeder.start()
    try:
        time.sleep(2.0)
        shown = cp.cli(None, "twin", "show", twin)
        assert shown.returncode == 0, shown.stderr
        v = int(shown.stdout.split("desired version ")[1].split()[0])
        state_version = _state(s, twin)["version"]
        time.sleep(1.5)  # the twin keeps changing: its state version moves, its desired version does not
        assert _state(s, twin)["version"] > state_version
        ok = cp.cli("ann", "twin", "set-desired", twin, "speed_sp_rpm=1300", "--expect-version", str(v))
        assert ok.returncode == 0 and f"desired version {v + 1}" in ok.stdout, ok.stdout + ok.stderr
        stale = cp.cli("ann", "twin", "set-desired", twin, "speed_sp_rpm=1350", "--expect-version", str(v))
        assert stale.returncode == 3 and "denied: stale_version" in stale.stderr, stale.stderr
        assert f"at desired version {v + 1}" in stale.stderr
        assert _state(s, twin)["desired"]["speed_sp_rpm"]["value"] == 1300.0
    finally:
        stop.set()
        feeder.join(10)


def test_maintenance_is_one_switch_set_and_left_the_documented_way(plant, cp: ControlPlane) -> None:
    s, twin = cp.s, plant.twin("modbus")
    on = cp.cli("ann", "twin", "mode", twin, "maintenance", "--reason", "bearing swap")
    assert on.returncode == 0 and "applied" in on.stdout, on.stdout + on.stderr
    shown = cp.cli(None, "twin", "show", twin)
    assert "(mode maintenance" in shown.stdout and "— maintenance" in shown.stdout, shown.stdout
    off = cp.cli("ann", "alerts", "maintenance", twin, "off")  # the alias: the same request
    assert off.returncode == 0 and "applied" in off.stdout, off.stdout + off.stderr
    assert "(mode normal" in cp.cli(None, "twin", "show", twin).stdout
    not_allowed = cp.cli("ann", "twin", "mode", twin, "simulating")
    assert not_allowed.returncode == 3 and "denied: mode_not_allowed" in not_allowed.stderr
    guest = cp.cli("mallory", "twin", "mode", twin, "maintenance")
    assert guest.returncode == 3 and "denied: no_matching_rule" in guest.stderr
    status = [orjson.loads(r.value) for r in read_topic(s, s.alerts.status_topic) if r.key == twin.encode()]
    assert [(st["mode"], st["maintenance"], st["by"]) for st in status] == [
        ("maintenance", True, "ann"),
        ("normal", False, "ann"),
    ]


def _history_digest(s: Settings, twins: list[str]) -> tuple[str, dict[str, int]]:
    rows = query(
        s,
        "SELECT twin_id, version, desired_version, event_time, status, mode, reported, desired, change, recorded_at"
        " FROM twin_state_history WHERE twin_id = ANY(%s) ORDER BY twin_id, version",
        (twins,),
    )
    top: dict[str, int] = {}
    for r in rows:
        top[r["twin_id"]] = r["version"]
    return hashlib.sha256(orjson.dumps(rows, default=str)).hexdigest(), top


def test_restart_without_recovery_and_with_a_wiped_folder_continues_versions(plant, cp: ControlPlane) -> None:
    s = cp.s
    twins = [plant.twin(p) for p in ("opcua", "mqtt", "modbus")]
    before = {t: (_state(s, t)["desired_version"], _state(s, t)["desired"], len(_commands_for(s, t))) for t in twins}
    for args, wipe in (("--no-recovery",), False), ((), True):
        cp.stop_flow()
        digest, top = _history_digest(s, twins)
        if wipe:
            shutil.rmtree(cp.recovery, ignore_errors=True)
        cp.start_flow(*args)
        try:
            wait_for(
                "new versions after the restart",
                lambda top=top: sum(_state(s, t)["version"] for t in twins) > sum(top.values()) + 3,
                timeout=90,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{cp.log()}") from None
        for twin in twins:
            versions = [
                r["version"]
                for r in query(s, "SELECT version FROM twin_state_history WHERE twin_id = %s ORDER BY version", (twin,))
            ]
            assert versions == list(range(1, len(versions) + 1)), twin  # continued: no restart at 1, no gap
        after, _ = _history_digest(s, twins)
        # every row stored before the restart is unchanged
        prefix, _ = _history_digest_upto(s, top)
        assert prefix == digest
        assert after != digest  # and new ones were added
    # the desired version and desired values survived both restarts (no request was applied twice)
    for t in twins:
        st = _state(s, t)
        assert (st["desired_version"], st["desired"], len(_commands_for(s, t))) == before[t], t


def _history_digest_upto(s: Settings, top: dict[str, int]) -> tuple[str, None]:
    rows = []
    for twin, v in sorted(top.items()):
        rows += query(
            s,
            "SELECT twin_id, version, desired_version, event_time, status, mode, reported, desired, change, recorded_at"
            " FROM twin_state_history WHERE twin_id = %s AND version <= %s ORDER BY twin_id, version",
            (twin, v),
        )
    return hashlib.sha256(orjson.dumps(rows, default=str)).hexdigest(), None


def test_history_rows_cannot_be_updated_or_deleted(cp: ControlPlane, plant) -> None:
    s, twin = cp.s, plant.twin("opcua")
    with psycopg.connect(s.postgres.conninfo()) as conn:
        for stmt in (
            "UPDATE twin_state_history SET status = 'desynced' WHERE twin_id = %s",
            "DELETE FROM twin_state_history WHERE twin_id = %s",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(stmt, (twin,))
            conn.rollback()


def test_maintenance_means_no_alert_and_no_learning_in_the_models_and_alerts_flows(plant, cp: ControlPlane) -> None:
    """`twinflow twin mode M maintenance`: the twin flow publishes the mode on twin.status; the models
    flow learns nothing from M (its detector never finishes warming up: no scores), the alerts flow
    opens no alert for M even when a score says anomalous; the twin H, in normal mode with the same
    readings, is scored and alerted. `twinflow alerts maintenance M off` (the alias) ends it: M learns."""
    from datetime import timedelta

    from operators.records.alerts import AnomalyScore
    from operators.records.alerts import encode as encode_record

    s, uid = cp.s, uuid.uuid4().hex[:6]
    m, h = f"maint-{uid}", f"healthy-{uid}"
    topics = {
        "TWINFLOW_ALERTS__ANOMALIES_TOPIC": f"it.scores.{uid}",
        "TWINFLOW_ALERTS__FORECASTS_TOPIC": f"it.forecasts.{uid}",
        "TWINFLOW_ALERTS__FAILURES_TOPIC": f"it.failures.{uid}",
        "TWINFLOW_ALERTS__TOPIC": f"it.alerts-out.{uid}",
        "TWINFLOW_ALERTS__ACTIONS_TOPIC": f"it.actions.{uid}",
        "TWINFLOW_TOPICS__MODEL_CONTROL": f"it.ctl.{uid}",
        "TWINFLOW_TOPICS__EVENTS": f"it.events.{uid}",
    }
    env = {
        **cp.env,
        **topics,
        "TWINFLOW_ML__ANOMALY__WARMUP": "40",
        "TWINFLOW_ML__FORECASTS": "false",
        "TWINFLOW_ALERTS__RULES__ANOMALY__MIN_DURATION_S": "1",
        "TWINFLOW_ALERTS__RULES__REORDER_WINDOW_S": "1",
    }
    a = s.alerts.model_copy(
        update={
            "anomalies_topic": topics["TWINFLOW_ALERTS__ANOMALIES_TOPIC"],
            "topic": topics["TWINFLOW_ALERTS__TOPIC"],
        }
    )
    sa = s.model_copy(update={"alerts": a})
    init = subprocess.run([sys.executable, "-m", "twinflow.cli.main", "kafka", "init"], env=env, capture_output=True)
    assert init.returncode == 0, init.stderr
    log = open(cp.tmp / f"flows-{uid}.log", "wb")  # noqa: SIM115
    flows = [
        subprocess.Popen(
            [sys.executable, "-m", "twinflow.cli.main", "run", name, "--no-recovery"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for name in ("models", "alerts")
    ]

    def readings(twin: str, start: datetime, n: int, x: float, seq0: int) -> list[tuple[bytes, bytes]]:
        out = []
        for i in range(n):
            ts = start + timedelta(milliseconds=100 * i)
            values = {"x": x + 0.3 * math.sin(i / 3), "y": 5.0 + 0.2 * math.cos(i / 5)}
            out.append((twin.encode(), envelope(twin, ts, seq0 + i, values, source="test")))
        return out

    def records(topic: str, twin: str, settle: bool) -> list:
        """``twin``'s records on ``topic``: until one shows up, or (``settle``) all that come within 8 s."""
        key = twin.encode()
        done = (lambda ms: False) if settle else (lambda ms: any(m.key() == key for m in ms))
        return [m.value() for m in consume(sa, topic, done, timeout=8.0 if settle else 20.0) if m.key() == key]

    def scores(twin: str, settle: bool = False) -> list[AnomalyScore]:
        import msgspec

        return [msgspec.json.decode(v, type=AnomalyScore) for v in records(a.anomalies_topic, twin, settle)]

    def opened(twin: str, settle: bool = False) -> list[dict]:
        return [orjson.loads(v) for v in records(a.topic, twin, settle)]

    try:
        t0 = datetime.now(UTC)
        produce(s, s.topics.raw, readings(m, t0, 1, 10.0, 0) + readings(h, t0, 60, 10.0, 0))
        wait_for("both twins known to the twin flow", lambda: _state(s, m) and _state(s, h))
        # The models flow is live (past the backlog of telemetry.raw) once it scores H: from then on it
        # reads twin.status as it comes, before the readings produced after it.
        wait_for("the models flow to catch up", lambda: scores(h), timeout=180)
        on = cp.cli("ann", "twin", "mode", m, "maintenance", "--reason", "acceptance")
        assert on.returncode == 0 and "applied" in on.stdout, on.stdout + on.stderr
        time.sleep(3.0)  # the models and alerts flows read twin.status
        t1 = datetime.now(UTC) + timedelta(seconds=1)
        normal, fault = 100, 40
        for twin, seq in ((m, 1), (h, 60)):
            produce(s, s.topics.raw, readings(twin, t1, normal, 10.0, seq))
            produce(s, s.topics.raw, readings(twin, t1 + timedelta(seconds=normal / 10), fault, 60.0, seq + normal))
        wait_for("H to be scored and alerted", lambda: scores(h) and opened(h), timeout=120)
        # A model elsewhere flags M too: the alerts flow still opens nothing while M is in maintenance.
        flagged = AnomalyScore(m, t1 + timedelta(seconds=12), 50.0, 1.0, True, {"x": 1.0}, "test")
        later = AnomalyScore(m, t1 + timedelta(seconds=14), 50.0, 1.0, True, {"x": 1.0}, "test")
        produce(sa, a.anomalies_topic, [(m.encode(), encode_record(flagged)), (m.encode(), encode_record(later))])
        time.sleep(5.0)
        # the models flow learned nothing from M (no score of its own), the alerts flow opened nothing for M
        assert [sc.model for sc in scores(m, settle=True)] == ["test", "test"]
        assert opened(m, settle=True) == []
        assert any(al["kind"] == "anomaly" for al in opened(h))

        off = cp.cli("ann", "alerts", "maintenance", m, "off")
        assert off.returncode == 0 and "applied" in off.stdout, off.stdout + off.stderr
        time.sleep(3.0)
        t2 = datetime.now(UTC) + timedelta(seconds=1)
        produce(s, s.topics.raw, readings(m, t2, 80, 10.0, 1000))
        wait_for("M to learn again and be scored", lambda: [sc for sc in scores(m) if sc.model != "test"], timeout=90)
        assert "(mode normal" in cp.cli(None, "twin", "show", m).stdout
    finally:
        for p in flows:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        for p in flows:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        log.close()
