"""Connectivity timeouts per twin type and per twin, as a user configures them in twinflow.toml, through
Kafka and `twinflow run twin` / `twinflow run alerts` into the twins' states and the alerts table
(docs/reconciliation.md, "Connectivity"; the fleet-wide case is tests/integration/test_device_offline.py).

Readings of a fast PLC type (offline after 3 s of silence) and of a slow battery-sensor type (45 min)
stop at the same moment: the PLC goes offline with its type's setting as the reason and gets a
device_offline alert after its type's alert delay, one battery sensor set per twin goes offline
too, the other battery sensor stays online and raises nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.plant_helpers import started_flows
from tests.twin_fixtures import twin_db  # noqa: F401
from tests.twin_kafka import envelope, produce, query, wait_for
from twinflow.cli.twin import load_state
from twinflow.demo.plant import topic_env
from twinflow.settings import Settings

pytestmark = pytest.mark.integration
PLC_OFFLINE_S, PLC_ALERT_S = 3.0, 2.0

CONFIG = """
[twin]
offline_after_s = 0               # fleet-wide: never by silence
offline_alert_after_s = 600

[twin.policy.types.plc]           # polled every second
match = ["plc-{uid}-*"]
offline_after_s = {plc_offline}
offline_alert_after_s = {plc_alert}

[twin.policy.types.battery]       # reports every 15 min
match = ["bat-{uid}-*"]
offline_after_s = 2700

[twin.policy.twins."bat-{uid}-2"] # this one sensor: like a PLC
offline_after_s = {plc_offline}
"""


@dataclass
class PerType:
    settings: Settings
    plc: str
    bat: str
    bat_fast: str


@pytest.fixture(scope="module")
def per_type(tmp_path_factory: pytest.TempPathFactory, twin_db: Settings) -> Iterator[PerType]:  # noqa: F811
    """The twin and alerts flows with two types' timeouts in the config file."""
    tmp: Path = tmp_path_factory.mktemp("offline_per_type")
    uid = uuid.uuid4().hex[:8]
    config = tmp / "twinflow.toml"
    config.write_text(CONFIG.format(uid=uid, plc_offline=PLC_OFFLINE_S, plc_alert=PLC_ALERT_S))
    env = {
        **topic_env(twin_db, f"it.offt.{uid}."),
        "TWINFLOW_CONFIG": str(config),
        "TWINFLOW_TOPICS__RAW_PARTITIONS": "1",
        "TWINFLOW_TWIN__PARTITIONS": "1",
        "TWINFLOW_POSTGRES__DBNAME": twin_db.postgres.dbname,
        "TWINFLOW_ALERTS__RULES__REORDER_WINDOW_S": "2",
        "TWINFLOW_FLOW__RECOVERY_DIR": str(tmp / "recovery"),
    }
    with started_flows(env, ["twin", "alerts"], tmp) as settings:
        assert settings.twin.policy.types["plc"].offline_after_s == PLC_OFFLINE_S  # the file is the one in effect
        yield PerType(settings, f"plc-{uid}-1", f"bat-{uid}-1", f"bat-{uid}-2")


def _connectivity(s: Settings, twin: str, state: str) -> dict | None:
    row = load_state(s, twin)
    return row if row is not None and (row.get("connectivity") or {}).get("state") == state else None


def _alerts(s: Settings, twin: str) -> list[dict]:
    return query(
        s,
        "SELECT state, severity, summary FROM alerts WHERE twin_id = %s AND kind = 'device_offline'"
        " ORDER BY opened_at DESC, version DESC",
        (twin,),
    )


def test_each_type_goes_offline_after_its_own_silence(per_type: PerType) -> None:
    s = per_type.settings
    twins = (per_type.plc, per_type.bat, per_type.bat_fast)
    for seq in range(1, 4):  # a few readings of every twin, then all fall silent at the same moment
        now = datetime.now(UTC)
        produce(s, s.topics.raw, [(t.encode(), envelope(t, now, seq, {"level": 50.0 + seq})) for t in twins])
        time.sleep(0.3)
    for twin in twins:
        wait_for(f"{twin} online", lambda t=twin: _connectivity(s, t, "online"), timeout=60)

    row = wait_for(f"{per_type.plc} offline", lambda: _connectivity(s, per_type.plc, "offline"), timeout=30)
    assert row["status"] == "offline"
    assert row["connectivity"]["reason"] == (
        f"no reading for {PLC_OFFLINE_S:g} s (twin.policy.types.plc.offline_after_s)"
    )
    row = wait_for(f"{per_type.bat_fast} offline", lambda: _connectivity(s, per_type.bat_fast, "offline"), timeout=30)
    assert row["connectivity"]["reason"] == (
        f"no reading for {PLC_OFFLINE_S:g} s (twin.policy.twins.{per_type.bat_fast}.offline_after_s)"
    )
    # The PLC's alert comes after its type's 2 s, not the fleet-wide 600 s.
    (alert, *_) = wait_for(
        f"a device_offline alert for {per_type.plc}",
        lambda: [a for a in _alerts(s, per_type.plc) if a["state"] == "open"],
        timeout=30,
    )
    assert alert["severity"] == "major" and "no reading for 3 s" in alert["summary"]

    # The same silence (and more) leaves the battery sensor of the slow type online, without an alert.
    row = load_state(s, per_type.bat)
    assert row is not None and row["connectivity"]["state"] == "online" and row["status"] == "synchronized"
    assert _alerts(s, per_type.bat) == []
