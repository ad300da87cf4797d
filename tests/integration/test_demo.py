"""The Quick start's demo runs end to end and reports every reading landed."""

import os
import re
import subprocess
import sys
import time

import httpx
import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from connectors.kafka.clients import client_config

# Every demo empties and fills the same demo database: demos run one at a time (tests/conftest.py).
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("demo")]


def test_demo_runs_and_everything_lands(stack_settings):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "twinflow.cli.main",
            "demo",
            "--publisher",
            "--duration",
            "4",
            "--twins",
            "3",
            "--rate",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "every published reading landed exactly once" in res.stdout
    assert res.stdout.count("-pump-0") >= 3


def test_plant_demo_runs_every_layer_and_writes_the_report(stack_settings, tmp_path):
    """The Quick start's `make demo`, shortened: simulator → 3 bridges → pipeline and alerts flows → report;
    while it runs, a setpoint changed through the web view's API reaches the device; afterwards its
    rows are in a database of its own and its topics are gone."""
    admin = AdminClient(client_config(stack_settings))
    demo_topics_before = {t for t in admin.list_topics(timeout=10).topics if t.startswith("demo.")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "twinflow.cli.main", "demo", "--duration", "45", "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    lines: list[str] = []
    try:
        url = None
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if found := re.search(r"(http://127\.0\.0\.1:\d+)/#token=(tf_\S+)", line):
                url = found
                break
        assert url is not None, "".join(lines)[-3000:]
        base, token = url.group(1), url.group(2)
        changed = _setpoint_through_the_api(base, token, "pump-002", "speed_sp_rpm", 1300.0)
        assert changed["status"] == "accepted", changed
        # Each pump is listed once its bridge has brought its first reading (the three bridges start
        # side by side; on a busy machine one may take a few seconds more).
        deadline, listed, auth = time.monotonic() + 30, set(), {"Authorization": f"Bearer {token}"}
        while listed != {"pump-001", "pump-002", "pump-003"} and time.monotonic() < deadline:
            pumps = httpx.get(f"{base}/api/v1/twins", params={"type": "pump"}, headers=auth)
            listed = {t["twin_id"] for t in pumps.json()["items"]}
            time.sleep(0.5)
        assert listed == {"pump-001", "pump-002", "pump-003"}, pumps.text
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines) + out
    assert proc.returncode == 0, out[-4000:]
    for twin in ("pump-001", "pump-002", "pump-003", "compressor-001", "compressor-002", "compressor-003"):
        assert twin in out  # every protocol's assets showed up in the live view
    assert "faults detected" in out
    assert "The run's rows stay in the database twinflow_demo until the next demo" in out
    html = (tmp_path / "report.html").read_text()
    assert html.count('data-chart="sensor"') >= 6 and html.count('data-chart="timeline"') == 6
    demo_db = stack_settings.postgres.conninfo(dbname=f"{stack_settings.postgres.dbname}_demo")
    with psycopg.connect(demo_db) as db:
        sent = db.execute(
            "SELECT count(*) FROM twin_state_history WHERE twin_id = 'pump-002' "
            "AND (desired->'speed_sp_rpm'->>'value')::float8 = 1300",
        ).fetchone()[0]
        assert sent > 0  # the change and the device's following are in the demo's database
    deadline = time.monotonic() + 30  # deleted as the demo ends (the broker confirms each)
    while time.monotonic() < deadline:
        left = {t for t in admin.list_topics(timeout=10).topics if t.startswith("demo.")} - demo_topics_before
        if not left:
            break
        time.sleep(1)
    assert not left, left


def _setpoint_through_the_api(base: str, token: str, twin: str, name: str, value: float) -> dict:
    """PATCH the twin's desired value as the web view's form does (waiting until the twin has a state),
    then wait until the device reports it; returns the PATCH's answer."""
    auth = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=base, headers=auth, timeout=30) as c:
        while True:
            try:
                r = c.patch(
                    f"/api/v1/twins/{twin}/desired",
                    json={"values": {name: value}, "reason": "demo test"},
                    headers={"If-Match": "*"},
                )
            except httpx.ConnectError:  # the server is starting
                if time.monotonic() > deadline:
                    raise
            else:
                if r.status_code != 404 or time.monotonic() > deadline:  # 404: no state of the twin yet
                    break
            time.sleep(1)
        assert r.status_code == 202, r.text
        while time.monotonic() < deadline:
            reported = c.get(f"/api/v1/twins/{twin}").json()["reported"].get(name, {}).get("value")
            if reported is not None and abs(reported - value) <= 1.0:
                return r.json()
            time.sleep(0.5)
    raise AssertionError(f"{twin} did not report {name} = {value} within a minute")
