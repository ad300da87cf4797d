"""`twinflow replay` prints what the live flow publishes (docs/ml.md, "Backtest your own history").

The same history goes twice through twinflow, as a user would send it: once as a CSV file through
`twinflow replay`, once as telemetry envelopes on Kafka (in time order) through `twinflow run pipeline
--no-tail` or `twinflow run models --no-tail` (private topics and database, the same settings, with
per-twin `[[ml.ranges]]`). Per twin and timestamp the replay's `anomaly_score`, `is_anomaly`,
`health`, `kind` and `sensors` equal the live `AnomalyScore` records bit for bit, replay's empty rows
(warm-up, a setpoint settling, a row without values) are the readings the live flow published
nothing for, no live record is left over (no silence timer fired), and the pipeline's
`anomaly_scores` rows are its Kafka records.

Histories: SKAB `valve1/5.csv` (a real pump rig, 1 Hz, an inlet valve closing; its `Volume Flow
RateRMS` header renamed, as a sensor name has no space in an envelope; `--twin` names it) where the
shared data is (`TWINFLOW_DATA_DIR`), else a file of its shape and kind of fault made here (a clone
without the shared data still runs the whole comparison), and a
synthetic file of two twins, newest first (an id column, ISO times with a zone and milliseconds, a
`running` true/false column, a historian's `#N/A` cell, a row without values, an overheating fault).
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from operators.ml.replay import explained
from operators.records.alerts import AnomalyScore, decode
from tests.conftest import REPO, data_dir
from tests.integration.plant_helpers import settings_of
from tests.kafka_helpers import produce, read_topic
from tests.process_helpers import Background
from tests.twin_kafka import envelope, query
from twinflow.demo.plant import topic_env
from twinflow.settings import Settings

pytestmark = pytest.mark.integration

SKAB = data_dir() / "skab" / "valve1" / "5.csv"
SKAB_RENAMED = {"Volume Flow RateRMS": "Volume_Flow_RateRMS"}  # envelope sensor names have no spaces
LABELS = ("anomaly", "changepoint")  # never model input
# A twin's own settings: physical ranges per twin glob (out_of_range once the faults push them out).
RANGES = (
    '[{"sensor": "Current", "high": 1.5, "twins": "skab-*"}, {"sensor": "temp_c", "high": 66.0, "twins": "pump-b-*"}]'
)
SYNTH_T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
SYNTH_ROWS = 700  # per twin, 1 Hz


@dataclass
class Live:
    uid: str
    tmp: Path
    vars: dict[str, str]
    settings: Settings

    def twinflow(self, name: str, *args: str) -> Background:
        """A ``twinflow`` command of this test's own (topics, database, this checkout's code)."""
        return Background(list(args), self.vars, self.tmp / f"{name}.log")


@pytest.fixture
def live(stack_settings: Settings, private_db: Settings, tmp_path: Path) -> Live:
    """Private topics and database for the CLI's commands, and the same settings in this process."""
    uid = uuid.uuid4().hex[:8]
    extra = {
        **topic_env(stack_settings, f"it.replay.{uid}."),
        "TWINFLOW_POSTGRES__DBNAME": private_db.postgres.dbname,
        "TWINFLOW_FLOW__RECOVERY_DIR": str(tmp_path / "recovery"),
        "TWINFLOW_ML__RANGES": RANGES,
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
    }
    settings = settings_of(extra)
    return Live(uid, tmp_path, {**os.environ, **extra}, settings)


def _skab_copy(dest: Path) -> Path:
    """SKAB's file with its one header of a name an envelope cannot carry renamed (values untouched);
    without the shared data, a file of its shape: ``;``-separated, times without a zone at 1 Hz, eight
    sensors, labels, and a valve closing (flow down, pressure and current up past its range)."""
    if not SKAB.exists():
        return _rig_like_skab(dest)
    header, body = SKAB.read_text().split("\n", 1)
    for old, new in SKAB_RENAMED.items():
        header = header.replace(old, new)
    dest.write_text(f"{header}\n{body}")
    return dest


def _rig_like_skab(dest: Path, rows: int = 1150, fault: tuple[int, int] = (700, 950)) -> Path:
    rng = random.Random(5)
    sensors = {  # SKAB's columns: level and noise
        "Accelerometer1RMS": (0.21, 0.004), "Accelerometer2RMS": (0.27, 0.004), "Current": (0.95, 0.08),
        "Pressure": (0.05, 0.02), "Temperature": (89.0, 0.1), "Thermocouple": (29.0, 0.05),
        "Voltage": (230.0, 1.5), "Volume_Flow_RateRMS": (32.0, 0.3),
    }  # fmt: skip
    lines = [";".join(["datetime", *sensors, *LABELS])]
    t0 = datetime(2020, 3, 9, 10, 14, 33)
    for i in range(rows):
        closing = min(max((i - fault[0]) / 60, 0.0), 1.0) if fault[0] <= i < fault[1] else 0.0
        shift = {"Volume_Flow_RateRMS": -6.0, "Pressure": 0.6, "Current": 0.9, "Temperature": 1.5}
        values = [
            level + noise * rng.gauss(0, 1) + closing * shift.get(name, 0.0) for name, (level, noise) in sensors.items()
        ]
        labels = [int(closing > 0), int(i in fault)]
        lines.append(";".join([(t0 + timedelta(seconds=i)).isoformat(sep=" "), *map(repr, values), *map(str, labels)]))
    dest.write_text("\n".join(lines) + "\n")
    return dest


def _synthetic(dest: Path, uid: str) -> Path:
    """Two pumps, rows interleaved in time order; ``pump-b`` overheats after 550 s; ``pump-a`` stops
    for 20 s (``running`` false: a setpoint change, the operating point settles); one ``#N/A``."""
    lines = ["datetime,machine,flow_m3h,temp_c,vib_mm_s,running"]
    for i in range(SYNTH_ROWS):
        ts = SYNTH_T0 + timedelta(seconds=i, milliseconds=250)
        shown = (ts + timedelta(hours=1)).replace(tzinfo=None).isoformat(timespec="milliseconds") + "+01:00"
        for twin in ("a", "b"):
            running = not (twin == "a" and 450 <= i < 470)
            flow = (120.0 if running else 0.0) + 2.0 * math.sin(i / 9 + (twin == "b")) + 0.3 * math.cos(i * 1.7)
            temp = (
                60.0
                + math.sin(i / 30)
                + 0.2 * math.cos(i * 2.3)
                + (0.08 * (i - 550) if twin == "b" and i >= 550 else 0)
            )
            vib = 2.0 + 0.1 * math.sin(i * 0.77) + 0.05 * math.cos(i * 3.1)
            temp_cell = "#N/A" if twin == "a" and i == 500 else repr(temp)
            if twin == "b" and i == 520:  # a row of the export without any value: the device sent nothing
                lines.append(f"{shown},pump-{twin}-{uid},,#N/A,,")
                continue
            lines.append(f"{shown},pump-{twin}-{uid},{flow!r},{temp_cell},{vib!r},{str(running).lower()}")
    dest.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")  # newest first, as historians export
    return dest


def _envelopes(path: Path, time_col: str, id_col: str | None, twin: str | None, skip: tuple[str, ...] = ()) -> list:
    """The file's rows as a device would have sent them: in time order, one envelope per row, key =
    twin, ts in UTC, seq rising per twin, the missing and the text cells left out, true/false as booleans."""
    sep = ";" if path.read_text().split("\n", 1)[0].count(";") else ","
    out, seq = [], {}
    rows = pl.read_csv(path, separator=sep, infer_schema=False).iter_rows(named=True)
    for row in sorted(rows, key=lambda r: _utc(r[time_col])):
        name = row[id_col] if id_col else twin
        ts = datetime.fromisoformat(row[time_col])
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
        readings: dict[str, float | bool] = {}
        for k, v in row.items():
            if k in (time_col, id_col, *skip) or v is None:
                continue
            if v in ("true", "false"):
                readings[k] = v == "true"
            else:
                try:
                    readings[k] = float(v)
                except ValueError:
                    continue  # a historian's text marker: no value
        if not readings:
            continue  # nothing to send
        seq[name] = seq.get(name, -1) + 1
        out.append((name.encode(), envelope(name, ts, seq[name], readings, source="test")))
    return out


def _replay(live: Live, name: str, path: Path, *args: str) -> pl.DataFrame:
    out = live.tmp / f"{name}.scores.csv"
    res = subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", "replay", str(path), "--out", str(out), *args],
        env=live.vars,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return pl.read_csv(out, infer_schema_length=None)


def _utc(text: str) -> datetime:
    ts = datetime.fromisoformat(text)
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _differences(replayed: list[dict], published: dict[tuple[str, datetime], AnomalyScore]) -> tuple[list, float]:
    """Replay rows that are not what was published for the same (twin, ts); the largest score gap."""
    diffs, gap = [], 0.0
    for row in replayed:
        rec = published.pop((row["twin"], row["ts"]), None)
        if row["anomaly_score"] is None:
            if rec is not None:
                diffs.append(("published, empty in replay", row, rec))
            continue
        if rec is None:
            diffs.append(("replayed, never published", row, None))
            continue
        gap = max(gap, abs(rec.score - row["anomaly_score"]))
        mine = (row["anomaly_score"], bool(row["is_anomaly"]), row["health"], row["kind"] or "", row["sensors"] or "")
        theirs = (rec.score, rec.is_anomaly, rec.health, rec.kind or "", explained(rec))
        if mine != theirs:
            diffs.append(("differs", mine, theirs))
    return diffs, gap


@pytest.mark.parametrize("flow", ["pipeline", "models"])
def test_replay_prints_what_the_live_flow_publishes(live: Live, flow: str) -> None:
    uid = live.uid
    skab_twin = f"skab-{uid}"
    skab = _skab_copy(live.tmp / "skab-valve1-5.csv")
    synth = _synthetic(live.tmp / "pumps.csv", uid)

    excluded = [a for label in LABELS for a in ("--exclude", label)]
    by_replay = [
        *(
            {**r, "twin": r["id"]}
            for r in _replay(live, "skab", skab, "--time-col", "datetime", "--twin", skab_twin, *excluded).iter_rows(
                named=True
            )
        ),
        *(
            {**r, "twin": r["id"]}
            for r in _replay(live, "synth", synth, "--time-col", "datetime", "--id-col", "machine").iter_rows(
                named=True
            )
        ),
    ]
    for row in by_replay:
        row["ts"] = _utc(str(row["time"]))

    produce(
        live.settings,
        [*_envelopes(skab, "datetime", None, skab_twin, LABELS), *_envelopes(synth, "datetime", "machine", None)],
    )
    job = live.twinflow(flow, "run", flow, "--no-tail", "--no-recovery")
    assert job.shell.wait(180) == 0, job.output()[-3000:]
    assert "Traceback" not in job.output()

    records = [decode(AnomalyScore, m.value) for m in read_topic(live.settings, live.settings.alerts.anomalies_topic)]
    published = {(r.twin_id, r.ts): r for r in records}
    assert len(published) == len(records), "one record per reading"
    if flow == "pipeline":  # it writes the rows itself (with the models flow, the alerts flow does)
        rows = query(live.settings, "SELECT twin_id, ts, score, is_anomaly, kind, health FROM anomaly_scores")
        assert {(r["twin_id"], r["ts"], r["score"], r["is_anomaly"], r["kind"], r["health"]) for r in rows} == {
            (r.twin_id, r.ts, r.score, r.is_anomaly, r.kind, r.health) for r in records
        }

    diffs, gap = _differences(by_replay, published)
    scored = sum(r["anomaly_score"] is not None for r in by_replay)
    assert not diffs, f"{len(diffs)} of {len(by_replay)} rows ({scored} scored) differ, score gap {gap}: {diffs[:5]}"
    assert not published, f"published for no replayed row (a silence timer?): {list(published.values())[:5]}"
    # the histories are worth comparing: each twin scored, the faults flagged
    flagged = {r["twin"] for r in by_replay if r["is_anomaly"]}
    assert {skab_twin, f"pump-b-{uid}"} <= flagged
    out_of_range = {r["twin"] for r in by_replay if "out_of_range" in (r["sensors"] or "")}
    assert out_of_range == {skab_twin, f"pump-b-{uid}"}  # the per-twin ranges applied
    settling = [r for r in by_replay if r["twin"] == f"pump-a-{uid}" and r["anomaly_score"] is None]
    assert len(settling) > 400 + 20  # warm-up, then a stop and a start settling
    assert scored > 1000
