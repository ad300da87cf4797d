"""A gateway that lost one of a device's tags, through Kafka and `twinflow run twin` / `twinflow run alerts`
into the twin's state, its history, `twinflow twin show` and the alerts table (docs/reconciliation.md,
"Connectivity").

The gateway (as the OPC-UA bridge publishes it: the bad tag's notifications in envelopes of their own)
reports ``temp_c`` as BadNoCommunication every second while ``speed`` keeps good values. The twin stays
online with ``temp_c`` listed as unreachable, no version of its history is offline and no device_offline
alert opens, although the alert delay (1 s) is shorter than the outage. When ``speed`` is lost too, the
device is unreachable as a whole: offline, and the alert opens (the same flows can raise it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.plant_helpers import started_flows
from tests.twin_fixtures import twin_db  # noqa: F401
from tests.twin_kafka import produce, query, wait_for
from twinflow.cli.twin import load_state
from twinflow.demo.plant import topic_env
from twinflow.settings import Settings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Gateway:
    settings: Settings
    env: dict[str, str]
    twin: str
    seq: int = 0

    def send(self, readings: dict[str, float | None], status: dict[str, str] | None = None) -> None:
        """One envelope of the gateway's bridge, now."""
        self.seq += 1
        body = {
            "v": 1,
            "twin_id": self.twin,
            "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "seq": self.seq,
            "source": "opcua",
            "readings": readings,
            **({"status": status} if status else {}),
        }
        produce(self.settings, self.settings.topics.raw, [(self.twin.encode(), json.dumps(body).encode())])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, twin_db: Settings) -> Iterator[Gateway]:  # noqa: F811
    """The twin and alerts flows, with a device_offline alert 1 s after a twin goes offline."""
    tmp: Path = tmp_path_factory.mktemp("partial_connectivity")
    uid = uuid.uuid4().hex[:8]
    env = {
        **topic_env(twin_db, f"it.part.{uid}."),
        "TWINFLOW_TOPICS__RAW_PARTITIONS": "1",
        "TWINFLOW_TWIN__PARTITIONS": "1",
        "TWINFLOW_POSTGRES__DBNAME": twin_db.postgres.dbname,
        "TWINFLOW_TWIN__OFFLINE_ALERT_AFTER_S": "1",
        "TWINFLOW_ALERTS__RULES__REORDER_WINDOW_S": "2",
        "TWINFLOW_FLOW__RECOVERY_DIR": str(tmp / "recovery"),
    }
    with started_flows(env, ["twin", "alerts"], tmp) as settings:
        yield Gateway(settings, {**os.environ, **env}, f"pump-part-{uid}")


def _alerts(s: Settings, twin: str) -> list[dict]:
    return query(s, "SELECT state FROM alerts WHERE twin_id = %s AND kind = 'device_offline'", (twin,))


def _history(s: Settings, twin: str) -> list[dict]:
    return query(
        s, "SELECT version, connectivity FROM twin_state_history WHERE twin_id = %s ORDER BY version", (twin,)
    )


def test_one_lost_tag_keeps_the_twin_online_with_the_tag_listed_and_raises_no_alert(gateway: Gateway) -> None:
    s, twin = gateway.settings, gateway.twin
    gateway.send({"speed": 1000.0, "temp_c": 40.0})
    online = lambda: ((load_state(s, twin) or {}).get("connectivity") or {}).get("state") == "online"  # noqa: E731
    wait_for(f"{twin} online", online, 60)

    for i in range(8):  # the lost tag notified every second, the other tag good in between
        gateway.send({"temp_c": None}, {"temp_c": "BadNoCommunication"})
        time.sleep(0.5)
        gateway.send({"speed": 1000.0 + 100 * i})
        time.sleep(0.5)
    row = wait_for(
        "the last speed in the twin", lambda: (r := load_state(s, twin)) and r["reported"]["speed"]["value"] == 1700.0
    )
    row = load_state(s, twin)
    assert row is not None and row["status"] == "synchronized", row
    assert row["connectivity"]["state"] == "online" and list(row["connectivity"]["unreachable"]) == ["temp_c"]
    history = _history(s, twin)
    assert [h["connectivity"]["state"] for h in history] == ["online"] * len(history)  # never offline
    # One version for the lost tag (its first notification) and one per new speed, none per notification.
    assert len(history) == 1 + 1 + 8 - 1, history
    time.sleep(3)  # the alerts flow's reorder window
    assert _alerts(s, twin) == []

    shown = subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", "twin", "show", twin],
        cwd=REPO,
        env=gateway.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "device online since" in shown.stdout and "sensor temp_c unreachable since" in shown.stdout

    # The other tag lost too: the device as a whole cannot be reached.
    for _ in range(4):
        gateway.send({"speed": None, "temp_c": None}, {"speed": "BadNoCommunication", "temp_c": "BadNoCommunication"})
        time.sleep(0.5)
    row = wait_for(f"{twin} offline", lambda: (r := load_state(s, twin)) and r["status"] == "offline" and r)
    assert row["connectivity"]["reason"] == f"opcua BadNoCommunication on {twin}.speed"
    assert sorted(row["connectivity"]["unreachable"]) == ["speed", "temp_c"]
    wait_for("a device_offline alert", lambda: [a for a in _alerts(s, twin) if a["state"] == "open"], timeout=30)
