"""End to end on real services: mosquitto_pub → Mosquitto → bridge → Kafka → flow → PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest

from tests.process_helpers import start_twinflow as _start
from tests.process_helpers import stop as _stop
from tests.process_helpers import wait_for_log

pytestmark = pytest.mark.integration


def test_mosquitto_pub_readings_land_in_postgres(settings, unique, tmp_path):
    prefix = f"e2e{unique}"
    env = {
        **os.environ,
        "TWINFLOW_TOPICS__RAW": settings.topics.raw,
        "TWINFLOW_TOPICS__DLQ": settings.topics.dlq,
        "TWINFLOW_MQTT__TOPIC": f"{prefix}/+/telemetry",
        "TWINFLOW_MQTT__CLIENT_ID": f"bridge-{unique}",
    }
    log = open(tmp_path / "procs.log", "wb")  # noqa: SIM115
    bridge = _start(["bridge", "mqtt"], env, log)
    flow = _start(["run", "--no-recovery"], env, log)
    try:
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
        twins = [f"{prefix}-pump-{i}" for i in range(3)]
        lines: dict[str, list[bytes]] = {t: [] for t in twins}
        for twin in twins:
            for seq in range(1, 21):
                ts = (t0 + timedelta(milliseconds=250 * seq)).isoformat().replace("+00:00", "Z")
                lines[twin].append(
                    orjson.dumps(
                        {
                            "ts": ts,
                            "seq": seq,
                            "readings": {"rpm": 1400.0 + seq, "temp_c": 60.25},
                            "quality": "good",
                        }
                    )
                )
        # The bridge's session is persistent, but it must exist before the first publish.
        wait_for_log(tmp_path / "procs.log", b"subscribed", bridge)
        for twin in twins:
            # The real mosquitto_pub client; -l sends one message per stdin line.
            subprocess.run(
                [
                    "mosquitto_pub",
                    "-h",
                    settings.mqtt.host,
                    "-p",
                    str(settings.mqtt.port),
                    "-q",
                    "1",
                    "-t",
                    f"{prefix}/{twin}/telemetry",
                    "-l",
                ],
                input=b"\n".join(lines[twin]) + b"\n",
                check=True,
                timeout=30,
            )
        expected = len(twins) * 20 * 2
        with psycopg.connect(settings.postgres.conninfo(), autocommit=True) as db:
            deadline = time.monotonic() + 90
            while True:
                n = db.execute("SELECT count(*) FROM telemetry WHERE twin_id LIKE %s", (prefix + "-%",)).fetchone()[0]
                if n >= expected or time.monotonic() > deadline:
                    break
                assert flow.poll() is None, (tmp_path / "procs.log").read_text()
                time.sleep(0.5)
            rows = db.execute(
                "SELECT twin_id, sensor, ts, value, seq, quality, source FROM telemetry "
                "WHERE twin_id LIKE %s ORDER BY twin_id, seq, sensor",
                (prefix + "-%",),
            ).fetchall()
    finally:
        assert _stop(bridge) == 0, (tmp_path / "procs.log").read_text()
        _stop(flow)
        log.close()
    assert len(rows) == expected, (tmp_path / "procs.log").read_text()
    first = rows[0]
    assert first[0] == twins[0] and first[1] == "rpm" and first[3] == 1401.0 and first[4] == 1
    assert first[2] == t0 + timedelta(milliseconds=250)
    assert {r[5] for r in rows} == {0} and {r[6] for r in rows} == {"mqtt"}
    assert [r[4] for r in rows if r[0] == twins[2] and r[1] == "temp_c"] == list(range(1, 21))
