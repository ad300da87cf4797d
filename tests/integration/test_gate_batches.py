"""The desired-state gate decides a polled batch of requests together (`twinflow run twin` as a subprocess, the
real Kafka and PostgreSQL, requests signed as `twinflow twin set-desired` signs them):

* a burst with an unauthorized request, a replayed copy and a tampered copy mixed among good ones: each gets
  its verdict and its audit row (and the denied ones a refusal), only the good ones reach twin.commands, in
  the order sent per twin; the burst's verdicts are committed in a few transactions, not one per request;
* kill -9 in the middle of a burst, restart with recovery: every request decided once, every good one
  commanded once (one command id), no command without its audit row, the audit chain intact;
* a command Kafka does not take stops the flow before the twin's version with it is stored, so the restarted
  flow (the twin has no snapshot: it resumes from its stored version) decides the request again and sends it.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from connectors.kafka.clients import delete_topics, ensure_topics
from tests.integration.control_plane_helpers import ControlPlane, commands_for, new_key, state
from tests.kafka_helpers import limit_message_bytes
from tests.twin_fixtures import delete_topics as delete_twin_topics
from tests.twin_fixtures import settings_env, twin_db, twin_settings_for  # noqa: F401
from tests.twin_kafka import envelope, produce, query, wait_for
from twinflow.desired_client import Signer, build
from twinflow.settings import Settings

pytestmark = pytest.mark.integration
POLICY = '[[rule]]\nname = "operators"\nsubject = { roles = "operator" }\n[rule.parameters]\nspeed_sp = {}\n'
# No retries while a test runs: every command on twin.commands is a request's first.
TWIN_POLICY = {"defaults": {"strategy": "digital_wins", "ack_timeout_s": 600.0, "max_desync_time_s": 3600.0}}


@pytest.fixture
def plane(twin_db: Settings, tmp_path: Path) -> Iterator[ControlPlane]:  # noqa: F811
    """The twin flow on topics of its own; subjects ann (operator) and mallory (guest)."""
    sfx = uuid.uuid4().hex[:8]
    s = twin_settings_for(twin_db, TWIN_POLICY)
    s = s.model_copy(
        update={
            "alerts": s.alerts.model_copy(update={"status_topic": f"test.status.{sfx}"}),
            "security": s.security.model_copy(update={"desired_rejected_topic": f"test.rejected.{sfx}"}),
        }
    )
    ensure_topics(s)
    keys, pubs = {}, {}
    for name in ("ann", "mallory"):
        keys[name], pubs[name] = new_key(tmp_path, name)
    (tmp_path / "subjects.toml").write_text(
        f'[subject.ann]\nroles = ["operator"]\npublic_keys = ["{pubs["ann"]}"]\n'
        f'[subject.mallory]\nroles = ["guest"]\npublic_keys = ["{pubs["mallory"]}"]\n'
    )
    (tmp_path / "policy.toml").write_text(POLICY)
    env = {
        **os.environ,
        **settings_env(s),
        "TWINFLOW_ALERTS__STATUS_TOPIC": s.alerts.status_topic,
        "TWINFLOW_SECURITY__DESIRED_REJECTED_TOPIC": s.security.desired_rejected_topic,
        "TWINFLOW_SECURITY__SUBJECTS_FILE": str(tmp_path / "subjects.toml"),
        "TWINFLOW_SECURITY__POLICY_FILE": str(tmp_path / "policy.toml"),
        "TWINFLOW_FLOW__RECOVERY_DIR": str(tmp_path / "recovery"),
    }
    cp = ControlPlane(s, env, keys, tmp_path, recovery=tmp_path / "recovery" / "twin")
    try:
        yield cp
    finally:
        cp.stop_flow()
        delete_twin_topics(s)
        delete_topics(s, [s.alerts.status_topic, s.security.desired_rejected_topic])


def signer(cp: ControlPlane, who: str) -> Signer:
    return Signer(who, load_pem_private_key(cp.keys[who].read_bytes(), None))


def known_twins(cp: ControlPlane, twins: list[str]) -> None:
    """Start the flow and make ``twins`` known with a reading of ``speed_sp`` each."""
    cp.start_flow()
    now = datetime.now(UTC)
    produce(cp.s, cp.s.topics.raw, [(t.encode(), envelope(t, now, 1, {"speed_sp": 100.0})) for t in twins])
    for t in twins:
        try:
            wait_for(f"a first state of {t}", lambda t=t: state(cp.s, t), timeout=90)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{cp.log()}") from None


def decided(s: Settings, twins: list[str]) -> list[dict]:
    """The gate's verdicts on these twins' records, in Kafka order, with their audit rows."""
    return query(
        s,
        "SELECT r.twin_id, r.request_id, r.decision, r.reason, r.actor, r.xmin::text AS tx, a.decision AS audited,"
        " a.reason AS audit_reason, a.new AS audit_new FROM desired_requests r"
        ' JOIN desired_audit a ON a.id = r.audit_id WHERE r.twin_id = ANY(%s) ORDER BY r."offset"',
        (twins,),
    )


def test_a_mixed_burst_gets_each_its_verdict_and_audit_row_and_only_good_ones_are_commanded_in_order(
    plane: ControlPlane,
) -> None:
    s, tag = plane.s, uuid.uuid4().hex[:6]
    twins = [f"gate-{tag}-{i}" for i in range(3)]
    known_twins(plane, twins)
    ann, mallory = signer(plane, "ann"), signer(plane, "mallory")
    good = {t: [1000.0 + 100 * i + k for k in range(40)] for i, t in enumerate(twins)}
    burst: list[tuple[bytes, bytes]] = []
    expected: list[tuple[str, str, str]] = []  # (twin, reason, actor) in Kafka order
    for k in range(40):
        for t in twins:
            value = build(ann, t, {"speed_sp": good[t][k]}, reason="burst")[1]
            if k == 10 and t == twins[0]:  # a guest: no rule lets mallory set anything
                burst.append((t.encode(), build(mallory, t, {"speed_sp": 7.0})[1]))
                expected.append((t, "no_matching_rule", "mallory"))
            if k == 20 and t == twins[2]:  # a tampered copy, ahead of the original: it claims no request id
                burst.append((t.encode(), value.replace(str(good[t][k]).encode(), b"4444.0")))
                expected.append((t, "bad_signature", "ann"))
            burst.append((t.encode(), value))
            expected.append((t, "allowed", "ann"))
            if k == 30 and t == twins[1]:  # the same request again, in the same burst
                burst.append((t.encode(), value))
                expected.append((t, "replayed_request", "ann"))
    produce(s, s.twin.desired_topic, burst)

    try:
        wait_for("every request decided", lambda: len(decided(s, twins)) == len(burst), timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{plane.log()}") from None
    rows = decided(s, twins)
    assert [(r["twin_id"], r["reason"], r["actor"]) for r in rows] == expected
    assert all((r["audited"], r["audit_reason"]) == (r["decision"], r["reason"]) for r in rows)
    assert [r["audit_new"]["values"]["speed_sp"] for r in rows if r["twin_id"] == twins[0]][10] == 7.0
    refused = query(
        s, "SELECT twin_id, reason FROM desired_rejections WHERE twin_id = ANY(%s) ORDER BY twin_id, id", (twins,)
    )
    denied = [(t, reason) for t, reason, _ in expected if reason != "allowed"]
    assert [(r["twin_id"], r["reason"]) for r in refused] == sorted(denied, key=lambda d: d[0])  # per twin, in order
    # Only the good ones, each once, in the order sent per twin.
    wait_for("the commands", lambda: sum(len(commands_for(s, t)) for t in twins) >= 120, timeout=30)
    time.sleep(1.0)  # a command that should not be there would be by now
    for t in twins:
        assert [c["value"] for c in commands_for(s, t)] == good[t], t
    # Decided together: a few transactions for the burst, not one per request (the gate before: 123 of 123).
    transactions = len({r["tx"] for r in rows})
    print(f"\n{len(burst)} requests decided in {transactions} transaction(s)")
    assert transactions <= len(burst) // 10, f"{transactions} transactions for {len(burst)} requests"
    verify = plane.cli(None, "audit", "verify")
    assert verify.returncode == 0 and "audit chain intact" in verify.stdout, verify.stdout + verify.stderr


def test_kill_9_during_a_burst_neither_loses_nor_doubles_nor_forwards_an_unaudited_command(
    plane: ControlPlane,
) -> None:
    s, tag = plane.s, uuid.uuid4().hex[:6]
    twins = [f"kill-{tag}-{i}" for i in range(4)]
    known_twins(plane, twins)
    ann = signer(plane, "ann")
    per_twin, chunk = 150, 20
    good = {t: [1000.0 + 1000 * i + k for k in range(per_twin)] for i, t in enumerate(twins)}
    records = [
        (t.encode(), build(ann, t, {"speed_sp": good[t][k]}, reason="kill")[1]) for k in range(per_twin) for t in twins
    ]
    total = len(records)
    killed_at = None
    for n in range(0, total, chunk):  # a burst spread over a few seconds, so the kill lands inside it
        produce(s, s.twin.desired_topic, records[n : n + chunk])
        if killed_at is None and len(decided(s, twins)) >= total // 3:
            os.killpg(plane.flow.pid, signal.SIGKILL)
            plane.flow.wait(30)
            killed_at = len(decided(s, twins))
        time.sleep(0.05)
    assert killed_at is not None and killed_at < total, "the flow was not killed within the burst: proves nothing"

    plane.start_flow()  # with its recovery folder, as deployed
    try:
        wait_for("every request decided after the restart", lambda: len(decided(s, twins)) == total, timeout=120)
        wait_for(
            "every twin at its newest desired value",
            lambda: all((state(s, t) or {}).get("desired_version") == per_twin for t in twins),
            timeout=60,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc} (killed after {killed_at} of {total} verdicts)\n{plane.log()}") from None
    rows = decided(s, twins)
    assert all(r["reason"] == "allowed" for r in rows)  # decided once each: a re-read record is not a replay
    allowed = {(r["twin_id"], r["audit_new"]["values"]["speed_sp"]) for r in rows}
    for t in twins:
        commands = commands_for(s, t)
        ids: dict[float, set[str]] = {}
        for c in commands:
            ids.setdefault(c["value"], set()).add(c["command_id"])
        assert all((t, v) in allowed for v in ids), t  # nothing forwarded without its audit row
        assert list(dict.fromkeys(c["value"] for c in commands)) == good[t], t  # none lost, in order
        assert all(len(i) == 1 for i in ids.values()), t  # re-sent after the restart at most, never anew
    verify = plane.cli(None, "audit", "verify")
    assert verify.returncode == 0 and "audit chain intact" in verify.stdout, verify.stdout + verify.stderr
    print(f"\nkilled after {killed_at} of {total} verdicts")


def test_a_command_kafka_did_not_take_is_sent_after_the_restart_because_its_version_was_not_stored(
    plane: ControlPlane,
) -> None:
    """Outputs before state: a twin version is stored only once the Kafka records made with it are
    acknowledged. Here Kafka refuses the command (the topic takes no record that large), the flow stops
    before its first epoch ends (the twin has no snapshot), and the twin's stored versions end before the
    request; restarted, the flow resumes the twin from the database, decides the request again (its
    verdict recalled from the audit trail) and sends the command. Were the version stored (the history
    written beside the Kafka records, not after them), the restarted flow would take the request as
    applied and the command would never be sent."""
    s, twin = plane.s, f"fence-{uuid.uuid4().hex[:6]}"
    known_twins(plane, [twin])
    limit_message_bytes(s, s.twin.commands_topic, 64)
    produce(s, s.twin.desired_topic, [(twin.encode(), build(signer(plane, "ann"), twin, {"speed_sp": 1234.0})[1])])
    deadline = time.monotonic() + 120  # the next write or the epoch's end (30 s) sees the error
    while plane.flow.poll() is None and time.monotonic() < deadline:
        produce(s, s.topics.raw, [(twin.encode(), envelope(twin, datetime.now(UTC), 1, {"speed_sp": 100.0}))])
        time.sleep(0.5)
    assert plane.flow.poll() not in (None, 0), f"the flow did not stop on the refused command\n{plane.log()}"
    whole_log = (plane.tmp / "twin-flow.log").read_text(errors="replace")
    assert "Kafka did not acknowledge" in whole_log, whole_log[-4000:]
    # The CLI ends with what stopped the flow, not a Python traceback (Bytewax's own panic report precedes it).
    assert "Traceback" not in whole_log and "MSG_SIZE_TOO_LARGE" in whole_log.split("panicked")[-1], whole_log[-3000:]
    assert [r["decision"] for r in decided(s, [twin])] == ["allow"], "decided and audited before it was sent"
    stored = query(s, "SELECT max(desired_version) AS v FROM twin_state_history WHERE twin_id = %s", (twin,))
    assert stored[0]["v"] in (None, 0), "a version with the request was stored, its command lost"
    assert commands_for(s, twin) == []

    limit_message_bytes(s, s.twin.commands_topic, 1_048_588)
    plane.start_flow()
    try:
        wait_for("the command after the restart", lambda: commands_for(s, twin), timeout=120)
        wait_for("the twin at the new desired value", lambda: (state(s, twin) or {}).get("desired_version") == 1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{plane.log()}") from None
    assert [c["value"] for c in commands_for(s, twin)] == [1234.0]
    assert [r["decision"] for r in decided(s, [twin])] == ["allow"], "decided once: the verdict is recalled"
