"""Bursts of signed desired requests through the twin flow's gate: time from request to command on
``twin.commands`` and to the device's ack (docs/security.md: the gate commits a polled batch's verdicts together).

A private database and topics; the plant simulator's OPC-UA pumps (a writable ``speed_sp_rpm`` each) and the
OPC-UA bridge run in this process, the twin flow (``twinflow run twin``, recovery off) as a child, of this
checkout or of ``--checkout`` (a baseline, e.g. a ``git archive`` of an older commit). Two bursts of
``--burst`` requests, each produced at once: all for one twin, then spread over ``--twins`` twins. Times
are Kafka timestamps (the create time of the request, of its command and of the command's ack), all on
this machine.

    python -m benchmarks.gate_burst --burst 300 --twins 6
    python -m benchmarks.gate_burst --checkout /tmp/base --no-write     # the same on another checkout
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import psycopg
from psycopg import sql

from benchmarks.latency import own_run
from benchmarks.machine import append_result, markdown_table
from benchmarks.processes import checkout_python, flow_command, interruptible, stop
from connectors.postgres.migrate import migrate
from twinflow.desired_client import Signer, build
from twinflow.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
POLICY = '[[rule]]\nname = "operators"\nsubject = { roles = "operator" }\n[rule.parameters]\nspeed_sp_rpm = {}\n'


def mapping_toml(twins: list[str], port: int) -> str:
    """One OPC-UA pump per twin, its setpoint writable."""
    head = f'[opcua]\nendpoint = "opc.tcp://127.0.0.1:{port}/gate/"\npublishing_interval_ms = 100\n'
    assets = [
        f'[[assets]]\ntwin_id = "{t}"\ntype = "pump"\nprotocol = "opcua"\n[assets.params]\n'
        f'speed_sp_rpm = {{ node = "ns=2;s={t}.speed_sp_rpm", writable = true }}\n'
        f'speed_rpm = {{ node = "ns=2;s={t}.speed_rpm" }}\n'
        for t in twins
    ]
    return head + "\n".join(assets)


def topic_records(s: Settings, topic: str) -> list[tuple[bytes, bytes, float]]:
    """(key, value, Kafka timestamp in s) of every record on ``topic``."""
    from confluent_kafka import Consumer, TopicPartition

    from connectors.kafka.clients import client_config

    c = Consumer(client_config(s, **{"group.id": f"gate-burst-{uuid.uuid4().hex}", "enable.auto.commit": False}))
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[tuple[bytes, bytes, float]] = []
        while True:
            for m in c.consume(10_000, 0.5):
                if not m.error():
                    out.append((m.key(), m.value(), m.timestamp()[1] / 1000.0))
            # By position, not by the last message's offset: a transaction's marker ends some logs.
            at = c.position([TopicPartition(topic, p) for p in parts])
            if all(tp.offset >= ends[tp.partition] or ends[tp.partition] == 0 for tp in at):
                return out
    finally:
        c.close()


@dataclass
class Burst:
    name: str
    requests: list[tuple[str, float]]  # (twin, value), in the order sent
    sent_at: float = 0.0


def ms(xs: list[float]) -> list[str]:
    if not xs:
        return ["–"] * 3
    a = np.array(xs) * 1000
    return [f"{np.percentile(a, 50):,.0f}", f"{np.percentile(a, 99):,.0f}", f"{a.max():,.0f}"]


def measure(s: Settings, burst: Burst) -> list[str]:
    """The burst's row: requests, commands, request → command and → ack (p50/p99/max ms), newest applied (s)."""
    sent = {(k.decode(), orjson.loads(orjson.loads(v)["signed"])["values"]["speed_sp_rpm"]): ts
            for k, v, ts in topic_records(s, s.twin.desired_topic)}  # fmt: skip
    commands = {}
    for _k, v, ts in topic_records(s, s.twin.commands_topic):
        c = orjson.loads(v)
        commands.setdefault((c["twin_id"], c["value"]), (c["command_id"], ts))
    acks = {}
    for _k, v, ts in topic_records(s, s.twin.acks_topic):
        a = orjson.loads(v)
        acks.setdefault(a["command_id"], (a["status"], ts))
    to_command, to_ack, newest = [], [], []
    for req in burst.requests:
        if req not in commands:
            continue
        command_id, at = commands[req]
        to_command.append(at - sent[req])
        if command_id in acks:
            to_ack.append(acks[command_id][1] - sent[req])
    for twin in dict.fromkeys(t for t, _ in burst.requests):
        last = [r for r in burst.requests if r[0] == twin][-1]
        ack = acks.get(commands.get(last, ("?", 0))[0])
        if ack is not None and ack[0] == "applied":
            newest.append(ack[1] - burst.sent_at)
    found = sum(r in commands for r in burst.requests)
    done = f"{max(newest):.2f}" if len(newest) == len({t for t, _ in burst.requests}) else "not all"
    return [burst.name, str(len(burst.requests)), str(found), *ms(to_command), *ms(to_ack), done]


def wait(what: str, check: Callable[[], bool], timeout: float, flow: subprocess.Popen, tmp: Path) -> None:
    """Until ``check()``; the run ends with the flow's log when the flow ends or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not check():
        gone = flow.poll() is not None
        if gone or time.monotonic() > deadline:
            why = f"the twin flow exited ({flow.returncode})" if gone else f"timed out after {timeout:.0f} s"
            log = (tmp / "twin-flow.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"{why} waiting for {what}; the flow's log ends:\n{log}")
        time.sleep(0.2)


def run(burst: int, n_twins: int, checkout: Path | None) -> list[list[str]]:
    from operators.security.request_auth import new_private_key, public_key_text

    base = load_settings()
    uid = uuid.uuid4().hex[:8]
    db = f"twinflow_gateburst_{uid}"
    su = base.postgres.conninfo(
        user="postgres", password=base.stack.postgres_superuser_password.get_secret_value(), dbname="postgres"
    )
    scratch = tempfile.TemporaryDirectory(prefix="twinflow-gate-burst-")
    tmp = Path(scratch.name)
    key = new_private_key()
    (tmp / "subjects.toml").write_text(
        f'[subject.ann]\nroles = ["operator"]\npublic_keys = ["{public_key_text(key)}"]\n'
    )
    (tmp / "policy.toml").write_text(POLICY)
    ann = Signer("ann", key)
    env_vars = {
        "TWINFLOW_POSTGRES__DBNAME": db,
        "TWINFLOW_SECURITY__SUBJECTS_FILE": str(tmp / "subjects.toml"),
        "TWINFLOW_SECURITY__POLICY_FILE": str(tmp / "policy.toml"),
        "TWINFLOW_BRIDGE__COMMAND_GROUP": f"gate-burst-{uid}",
        "TWINFLOW_BRIDGE__BUFFER__SPILL_DIR": str(tmp / "buffer"),
        "TWINFLOW_SIM__GROUND_TRUTH_FILE": str(tmp / "ground-truth.jsonl"),
        "TWINFLOW_TWIN__POLICY": json.dumps({"defaults": {"strategy": "digital_wins"}}),
    }
    try:
        with psycopg.connect(su, autocommit=True) as conn:
            owner = sql.Identifier(base.postgres.user)
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), owner))
        with own_run("gateburst", **env_vars) as (env, s, prefix):
            migrate(s.postgres.conninfo(), "off")
            return bursts_through(s, env, [f"{prefix}-{i}" for i in range(n_twins)], burst, ann, checkout, tmp)
    finally:
        scratch.cleanup()
        with psycopg.connect(su, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


def bursts_through(
    s: Settings, env: dict[str, str], twins: list[str], burst: int, ann: Signer, checkout: Path | None, tmp: Path
) -> list[list[str]]:
    """Start the simulator, the bridge and the twin flow, send the bursts, measure; stop them again."""
    from benchmarks.bridges import free_port
    from connectors.bridges.mapping.loading import load_mapping
    from connectors.kafka.clients import make_producer
    from connectors.opcua.bridge import OpcuaBridge
    from connectors.sim.runner import Simulator

    mapping_path = tmp / "mapping.toml"
    mapping_path.write_text(mapping_toml(twins, free_port()))
    mapping = load_mapping(mapping_path)
    procs: list[subprocess.Popen] = []
    sim = Simulator(s, mapping, ground_truth_kafka=False).start()
    bridge = OpcuaBridge(s, mapping).start()
    try:
        if not (bridge.connected.wait(30) and bridge.commands is not None and bridge.commands.assigned.wait(30)):
            raise SystemExit("the OPC-UA bridge did not connect")
        child_env = {**env, **({"PYTHONPATH": str(checkout)} if checkout else {})}
        cmd = flow_command("twin", tail=True, checkout=checkout)
        if checkout is not None:
            cmd[0] = checkout_python(checkout)
        with (tmp / "twin-flow.log").open("ab") as log:
            flow = subprocess.Popen(cmd, cwd=checkout or REPO, env=child_env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(flow)

        def states() -> bool:
            with psycopg.connect(s.postgres.conninfo()) as c:
                q = "SELECT count(DISTINCT twin_id) FROM twin_state_history WHERE twin_id = ANY(%s)"
                return c.execute(q, (twins,)).fetchone()[0] == len(twins)

        wait("a first state of every twin", states, 120, flow, tmp)
        n = len(twins)
        bursts = [
            Burst("warm-up (1 per twin)", [(t, 1500.0) for t in twins]),
            Burst(f"one twin, {burst} requests", [(twins[0], 1000.0 + 0.5 * i) for i in range(burst)]),
            Burst(f"{n} twins, {burst} requests", [(twins[i % n], 2000.0 + 0.5 * i) for i in range(burst)]),
        ]
        producer = make_producer(s)
        rows = []
        for b in bursts:
            records = [build(ann, t, {"speed_sp_rpm": v}, reason="burst")[1] for t, v in b.requests]
            b.sent_at = time.time()
            for (t, _v), value in zip(b.requests, records, strict=True):
                producer.produce(s.twin.desired_topic, key=t.encode(), value=value)
            producer.flush(30)

            def answered(b: Burst = b) -> bool:
                acked = {orjson.loads(v)["command_id"] for _k, v, _ts in topic_records(s, s.twin.acks_topic)}
                cmds = [orjson.loads(v) for _k, v, _ts in topic_records(s, s.twin.commands_topic)]
                ours = {(c["twin_id"], c["value"]): c["command_id"] for c in cmds}
                return all(ours.get(r) in acked for r in b.requests)

            wait(f"the acks of the burst {b.name!r}", answered, 120, flow, tmp)
            rows.append(measure(s, b))
            print(" | ".join(rows[-1]), flush=True)
            time.sleep(2.0)
        return rows[1:]
    finally:
        stop(*procs)
        bridge.stop(10)
        sim.stop()


COLUMNS = (
    "burst",
    "requests",
    "commands",
    "→ command p50 ms",
    "p99",
    "max",
    "→ device ack p50 ms",
    "p99",
    "max",
    "newest value applied after s",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--burst", type=int, default=300, help="requests per burst")
    ap.add_argument("--twins", type=int, default=6, help="twins of the second burst")
    ap.add_argument("--checkout", type=Path, help="run the twin flow of this checkout (a baseline)")
    ap.add_argument("--no-write", action="store_true", help="print only, do not append to RESULTS.md")
    args = ap.parse_args()
    with interruptible():
        rows = run(args.burst, args.twins, args.checkout)
    table = markdown_table(COLUMNS, rows)
    print(table)
    if not args.no_write:
        which = f"the twin flow of {args.checkout}" if args.checkout else "this checkout"
        command = f"python -m benchmarks.gate_burst --burst {args.burst} --twins {args.twins}"
        append_result(f"Desired-request bursts through the gate ({which})", command, table)


if __name__ == "__main__":
    main()
