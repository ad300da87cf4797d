"""Every long-running command stops cleanly whenever the stop comes: during its imports, its start-up,
while it waits for a service that does not answer, or while it runs.

Each case starts the real command (``python -m twinflow.cli.main …``, its own session) several times
at once and sends SIGTERM to each copy at another delay (SIGINT to one): every copy must exit 0 within
10 s, print no traceback and leave no process behind (none still carries the case's marker variable).
Delays count from the moment the process handles SIGTERM (its twinflow code runs, after the ~0.1 s
Python needs to start: no program can handle a signal before; /proc says when), or 0.15 s after
the start if it does not by then. Without the handler installed by the entry point, a signal in the
first half second killed the command (exit 143) or ended it with a KeyboardInterrupt traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.plant_helpers import free_port, plant_toml
from twinflow.demo.plant import topic_env
from twinflow.settings import Settings

pytestmark = pytest.mark.integration

# Seconds after the process handles SIGTERM: at once (imports), imports, start-up, running. SIGINT: a
# Ctrl-C during the imports.
DELAYS = [(signal.SIGTERM, 0.0), (signal.SIGTERM, 0.2), (signal.SIGTERM, 0.5), (signal.SIGTERM, 1.5)]
DELAYS.append((signal.SIGINT, 0.3))
MARK = "TWINFLOW_TEST_STOP_ANYTIME"


@dataclass
class Case:
    uid: str
    tmp: Path
    env: dict[str, str]


@pytest.fixture
def case(stack_settings: Settings, tmp_path: Path) -> Case:
    """Topics, MQTT client ids, buffers and recovery folders of this test's own."""
    uid = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        **topic_env(stack_settings, f"it.anytime.{uid}."),
        "TWINFLOW_FLOW__RECOVERY_DIR": str(tmp_path / "recovery"),
        "TWINFLOW_BRIDGE__BUFFER__SPILL_DIR": str(tmp_path / "buffer"),
        "TWINFLOW_BRIDGE__COMMAND_GROUP": f"it-anytime-{uid}",
        "TWINFLOW_SIM__GROUND_TRUTH_FILE": str(tmp_path / "ground-truth.jsonl"),
        "TWINFLOW_MQTT__TOPIC": f"it/anytime/{uid}/+/telemetry",
        "TWINFLOW_MQTT__CLIENT_ID": f"it-anytime-{uid}",
        MARK: uid,
    }
    # The run's topics, as a user creates them before starting flows (a flow refuses missing input topics).
    init = subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", "kafka", "init"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    return Case(uid, tmp_path, env)


def _marked(uid: str) -> list[int]:
    """Processes whose environment carries this case's marker (the command and all it started)."""
    found = []
    needle = f"{MARK}={uid}".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


@pytest.fixture(autouse=True)
def _no_leftovers(case: Case) -> Iterator[None]:
    yield
    for pid in _marked(case.uid):  # a failed test leaves nothing running
        os.kill(pid, signal.SIGKILL)


def _handles_sigterm(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def _ready(proc: subprocess.Popen, limit: float = 0.15) -> float:
    """When ``proc`` handles SIGTERM, or ``limit`` s after now (monotonic time)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not _handles_sigterm(proc.pid):
        time.sleep(0.001)
    return time.monotonic()


def _stop_at_delays(
    case: Case, name: str, args: list[str], env: dict[str, str] | None = None, delays: list = DELAYS
) -> None:
    """Start one copy of the command per delay, signal each at its delay, check how each ended.
    ``{i}`` in an argument: the copy's number."""
    procs = []
    for i, (sig, delay) in enumerate(delays):
        log = case.tmp / f"{name}-{i}.log"
        per_copy = {"TWINFLOW_FLOW__RECOVERY_DIR": str(case.tmp / f"recovery-{i}")}
        per_copy["TWINFLOW_BRIDGE__BUFFER__SPILL_DIR"] = str(case.tmp / f"buffer-{i}")
        per_copy["TWINFLOW_MQTT__CLIENT_ID"] = f"it-anytime-{case.uid}-{i}"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "twinflow.cli.main", *(a.replace("{i}", str(i)) for a in args)],
                env={**case.env, **(env or {}), **per_copy},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append((proc, sig, _ready(proc) + delay, log))
    for proc, sig, at, _ in sorted(procs, key=lambda p: p[2]):
        time.sleep(max(0.0, at - time.monotonic()))
        proc.send_signal(sig)
    failures = []
    for (proc, sig, _, log), (_, delay) in zip(procs, delays, strict=True):
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            code = None
        text = log.read_text(errors="replace")
        what = f"{name} {signal.Signals(sig).name} at {delay} s"
        if code != 0:
            failures.append(f"{what}: exit {code}\n{text[-1500:]}")
        elif "Traceback" in text or "panicked" in text:
            failures.append(f"{what}: traceback\n{text[-3000:]}")
    deadline = time.monotonic() + 5
    while _marked(case.uid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _marked(case.uid)
    assert not failures and not left, "\n\n".join(failures) + (f"\nleft running: {left}" if left else "")


@pytest.mark.parametrize(
    "name,args",
    [
        ("run-telemetry", ["run", "telemetry"]),
        ("run-pipeline-cluster", ["run", "pipeline", "-p", "2"]),
        ("alerts-run", ["alerts", "run"]),
        ("serve", ["serve", "--port", "0"]),
        ("bridge-mqtt", ["bridge", "mqtt"]),
        ("listen-mqtt", ["mapping", "listen-mqtt", "--seconds", "60", "--topic", "it/anytime/none/#"]),
    ],
)
def test_a_command_stops_cleanly_whenever_the_signal_comes(case: Case, name: str, args: list[str]) -> None:
    _stop_at_delays(case, name, args)


def test_mapped_bridges_and_the_simulator_stop_cleanly_whenever_the_signal_comes(case: Case) -> None:
    """The bridges wait for devices that are not there (no simulator on these ports); the simulator
    starts its servers."""
    mapping = case.tmp / "plant.toml"
    mapping.write_text(plant_toml(case.uid, free_port(), free_port()))
    for protocol in ("opcua", "modbus"):
        _stop_at_delays(case, f"bridge-{protocol}", ["bridge", protocol, "--mapping", str(mapping)])
    for i in range(len(DELAYS)):  # servers of each copy's own
        (case.tmp / f"sim-{i}.toml").write_text(plant_toml(case.uid, free_port(), free_port()))
    _stop_at_delays(
        case, "simulate", ["simulate", "--mapping", str(case.tmp / "sim-{i}.toml"), "--only", "opcua,modbus"]
    )


@pytest.mark.xdist_group("demo")  # one demo at a time (tests/conftest.py)
def test_the_demo_stops_cleanly_whenever_the_signal_comes(case: Case) -> None:
    _stop_at_delays(case, "demo", ["demo", "--publisher", "--duration", "60", "--twins", "1", "--out", str(case.tmp)])


def test_commands_waiting_for_an_unreachable_broker_or_database_stop_cleanly(case: Case) -> None:
    """Kafka or PostgreSQL at a port where nothing listens: the commands wait (and retry) for it, also
    after their start-up (later stops)."""
    closed = str(free_port())
    kafka = {"TWINFLOW_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}"}
    later = [(signal.SIGTERM, 0.5), (signal.SIGTERM, 3.0), (signal.SIGTERM, 6.0), (signal.SIGINT, 4.0)]
    mapping = case.tmp / "plant.toml"
    mapping.write_text(plant_toml(case.uid, free_port(), free_port()))
    _stop_at_delays(case, "run-no-kafka", ["run", "telemetry"], kafka, later)
    _stop_at_delays(case, "bridge-no-kafka", ["bridge", "modbus", "--mapping", str(mapping)], kafka, later)
    _stop_at_delays(case, "serve-no-postgres", ["serve", "--port", "0"], {"TWINFLOW_POSTGRES__PORT": closed}, later)
    _stop_at_delays(case, "serve-no-kafka", ["serve", "--port", "0"], kafka, later)
