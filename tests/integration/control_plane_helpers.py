"""A control plane for tests from the outside: the twin flow as a subprocess over a plant (the simulator and
its bridges, tests/integration/conftest.py), subjects with their own keys, a policy, the real CLI.

Used by test_control_plane.py and test_control_sweep.py; every plane has its own topics and recovery folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from flows.twin_settings import TwinSettings
from operators.security.request_auth import new_private_key, private_key_pem, public_key_text
from tests.kafka_helpers import read_topic
from tests.twin_fixtures import settings_env
from tests.twin_kafka import query, wait_for
from twinflow.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SETPOINT = {"strategy": "digital_wins", "tolerance": 5.0, "clear_tolerance": 2.0, "hold_time_s": 0.3}


@dataclass
class ControlPlane:
    s: Settings
    env: dict[str, str]  # the flow's environment (and the CLI's, plus a key)
    keys: dict[str, Path]
    tmp: Path
    flow: subprocess.Popen | None = None
    recovery: Path | None = None

    def cli(self, who: str | None, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        env = dict(self.env)
        if who is not None:
            env["TWINFLOW_SECURITY__KEY_FILE"] = str(self.keys[who])
        return subprocess.run(
            [sys.executable, "-m", "twinflow.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )

    def start_flow(self, *args: str) -> None:
        log = open(self.tmp / "twin-flow.log", "ab")  # noqa: SIM115 (lives with the process)
        self.flow = subprocess.Popen(
            [sys.executable, "-m", "twinflow.cli.main", "run", "twin", *args],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop_flow(self) -> None:
        if self.flow is not None and self.flow.poll() is None:
            os.killpg(self.flow.pid, signal.SIGINT)
            try:
                self.flow.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.flow.pid, signal.SIGKILL)
                self.flow.wait()

    def log(self) -> str:
        return (self.tmp / "twin-flow.log").read_text(errors="replace")[-4000:]


def new_key(tmp: Path, name: str) -> tuple[Path, str]:
    """A private key file for ``name`` and its public key as the subjects file writes it."""
    key = new_private_key()
    path = tmp / f"{name}.key"
    path.write_bytes(private_key_pem(key))
    return path, public_key_text(key)


@contextmanager
def control_plane(
    plant: Any,
    db: Settings,
    tmp: Path,
    policy_toml: str,
    twin_policy: dict[str, Any],
    subjects: tuple[str, ...] = ("ann", "mallory", "forger"),
) -> Iterator[ControlPlane]:
    """The twin flow running over ``plant`` on topics of its own, with database ``db``.

    Subjects: ``ann`` (roles operator, site lab) and ``mallory`` (roles guest) are in the subjects file;
    any other name in ``subjects`` only gets a key (a stranger). ``twin_policy``: ``[twin.policy]``."""
    sfx = uuid.uuid4().hex[:8]
    keys, pubs = {}, {}
    for name in subjects:
        keys[name], pubs[name] = new_key(tmp, name)
    (tmp / "subjects.toml").write_text(
        f'[subject.ann]\nroles = ["operator"]\nsite = "lab"\npublic_keys = ["{pubs["ann"]}"]\n'
        f'[subject.mallory]\nroles = ["guest"]\npublic_keys = ["{pubs["mallory"]}"]\n'
    )
    (tmp / "policy.toml").write_text(policy_toml)
    ps = plant.settings
    tw = TwinSettings.model_validate(
        {
            **ps.twin.model_dump(exclude={"policy"}),
            "desired_topic": f"it.desired.{sfx}",
            "state_topic": f"it.state.{sfx}",
            "desync_topic": f"it.desync.{sfx}",
            "late_topic": f"it.late.{sfx}",
            "outcomes_topic": f"it.outcomes.{sfx}",
            "partitions": 1,
            "policy": twin_policy,
        }
    )
    s = ps.model_copy(
        update={
            "twin": tw,
            "postgres": db.postgres,
            "alerts": ps.alerts.model_copy(update={"status_topic": f"it.status.{sfx}"}),
            "security": ps.security.model_copy(update={"desired_rejected_topic": f"it.rejected.{sfx}"}),
        }
    )
    from connectors.kafka.clients import ensure_topics

    ensure_topics(s)
    env = {
        **os.environ,
        **settings_env(s),
        "TWINFLOW_ALERTS__STATUS_TOPIC": s.alerts.status_topic,
        "TWINFLOW_SECURITY__DESIRED_REJECTED_TOPIC": s.security.desired_rejected_topic,
        "TWINFLOW_SECURITY__SUBJECTS_FILE": str(tmp / "subjects.toml"),
        "TWINFLOW_SECURITY__POLICY_FILE": str(tmp / "policy.toml"),
        "TWINFLOW_FLOW__RECOVERY_DIR": str(tmp / "recovery"),
        "COLUMNS": "200",
    }
    plane = ControlPlane(s, env, keys, tmp, recovery=tmp / "recovery" / "twin")
    plane.start_flow()
    try:
        for twin in (plant.twin("opcua"), plant.twin("modbus")):
            wait_for(f"a first state of {twin}", lambda t=twin: state(s, t), timeout=90)
        yield plane
    finally:
        plane.stop_flow()


def state(s: Settings, twin: str) -> dict | None:
    rows = query(s, "SELECT * FROM twin_state_current WHERE twin_id = %s", (twin,))
    return rows[0] if rows else None


def commands_for(s: Settings, twin: str) -> list[dict]:
    return [orjson.loads(r.value) for r in read_topic(s, s.twin.commands_topic) if r.key == twin.encode()]


def audit(s: Settings, twin: str) -> list[dict]:
    return query(
        s, "SELECT actor, decision, reason, new FROM desired_audit WHERE twin_id = %s ORDER BY id", (twin,)
    )
