"""What a fault-free run writes, what the database holds after a run with faults, and the difference.

:class:`Expected` runs the readings a fault run sent through the same per-twin operators the flows
run (twin reconciliation, the online models, the alert lifecycle), in order and without Kafka,
Bytewax or PostgreSQL: that is what the fused pipeline and the alerts flow must leave in the
database whatever broke on the way. :func:`observe` reads what they left; :func:`compare` counts per
kind of output (telemetry rows, twin versions, anomaly scores, forecasts, alert versions and alert
episodes) what is lost, duplicated and changed.

The sinks' identities are the tables' keys: telemetry ``(twin_id, sensor, ts)``,
``twin_state_history (twin_id, version)`` (append-only, first write wins), ``anomaly_scores
(twin_id, ts)`` and ``forecasts (twin_id, sensor, ts, target_ts)`` (upserts), ``alerts (alert_id,
opened_at)`` (a newer version wins) and ``alert_events (alert_id, version, ts)``. A key cannot be
stored twice, so a duplicate shows as a row the fault-free run does not write: a version beyond the
expected ones (a reading versioned again), a score at a time no reading had, an alert version at
another time, a second alert id for one episode. A lost output is an expected key that is missing
(a gap in a twin's versions among them); a changed one is stored under its key with other content
(a model that learned a reading twice scores the next ones differently).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import psycopg

from flows.models import live_config
from flows.settings import DataflowSettings
from operators.alerts.ordering import step as alert_step
from operators.ml.live_step import reading_of, step_many
from operators.records.alerts import AnomalyScore, ForecastPoint, decode, encode
from operators.records.envelope import decode_partial
from operators.telemetry.guard import IngestGuard
from operators.twin.inputs import group_envelopes
from operators.twin.processor import TwinProcessor
from operators.twin.state import StateChange

Key = tuple[Any, ...]


def _reported(doc: dict[str, Any]) -> dict[str, tuple[float, str]]:
    """A version's reported values as stored (jsonb): sensor → (value, ts text)."""
    return {k: (float(v["value"]), v["ts"]) for k, v in doc.items()}


@dataclass
class Expected:
    """Per kind of output, key → content, as a fault-free run writes them; and per twin, for
    catching up mid-run, how many versions and scores the first n readings give."""

    rows: int = 0
    versions: dict[Key, Any] = field(default_factory=dict)  # (twin, version) → (event_time, reported)
    scores: dict[Key, Any] = field(default_factory=dict)  # (twin, ts) → (score, is_anomaly, kind)
    forecasts: dict[Key, Any] = field(default_factory=dict)  # (twin, sensor, ts, target_ts) → predicted
    alerts: dict[Key, Any] = field(default_factory=dict)  # (alert_id, version) → (event, state, updated_at)
    episodes: dict[str, Key] = field(default_factory=dict)  # alert_id → (twin, kind, opened_at)
    # twin → sorted reading indexes at which a version / a score is written
    version_at: dict[str, list[int]] = field(default_factory=dict)
    score_at: dict[str, list[int]] = field(default_factory=dict)
    last_ts: dict[str, datetime] = field(default_factory=dict)  # twin → its last reading's time

    @classmethod
    def of(cls, settings: DataflowSettings, twins: Iterable[tuple[str, list[bytes]]], sensors: int) -> Expected:
        """``twins``: per twin its envelopes in the order the flows read them (``telemetry.raw``: a
        broker restart may have reordered or repeated what a device sent over MQTT). A repeated
        envelope is absorbed, as the flows' guard does (operators/telemetry/guard.py)."""
        proc = TwinProcessor(settings.twin.policy, settings.twin.window_spec())  # no gate: no desired requests
        cfg, rules = live_config(settings), settings.alerts.rules
        out = cls()
        now = datetime.now(UTC)
        guard = IngestGuard(max_entries=2**62)
        for twin, values in twins:
            envs = [e for e in (decode_partial(v, key=twin.encode(), now=now)[0] for v in values) if guard.admit(e)]
            index = {e.ts: i for i, e in enumerate(envs)}
            out.last_ts[twin] = max(index)
            out.rows += sum(len(e.readings) for e in envs)
            assert all(len(e.readings) == sensors for e in envs)

            changes = proc.process_many(proc.new(twin), [ev for _, ev in group_envelopes(envs)])
            vs = [c for c in changes if isinstance(c, StateChange)]
            for c in vs:
                doc = orjson.loads(msgspec.json.encode(c.snapshot["reported"]))
                out.versions[(twin, c.version)] = (c.at, _reported(doc))
            out.version_at[twin] = sorted(index[c.at] for c in vs)

            _, records = step_many(None, [r for r in map(reading_of, envs) if r is not None], cfg, twin)
            state, alerts = None, []
            for rec in records:
                if isinstance(rec, AnomalyScore):
                    out.scores[(twin, rec.ts)] = (rec.score, rec.is_anomaly, rec.kind)
                elif isinstance(rec, ForecastPoint):
                    out.forecasts[(twin, rec.sensor, rec.ts, rec.target_ts)] = rec.predicted
                else:
                    continue
                # as the alerts flow gets it: through Kafka's JSON
                state, new = alert_step(state, decode(type(rec), encode(rec)), rules)
                alerts += new
            alerts += state.flush() if state else []
            for a in alerts:
                out.alerts[(a.alert_id, a.version)] = (a.event, a.state, a.updated_at)
                out.episodes[a.alert_id] = (a.twin_id, a.kind, a.opened_at)
            out.score_at[twin] = sorted(index[k[1]] for k in out.scores if k[0] == twin)
        return out

    def upto(self, sent: dict[str, int]) -> tuple[int, int]:
        """(versions, scores) written for the first ``sent[twin]`` readings of each twin."""
        versions = sum(bisect.bisect_left(self.version_at.get(t, []), n) for t, n in sent.items())
        scores = sum(bisect.bisect_left(self.score_at.get(t, []), n) for t, n in sent.items())
        return versions, scores


@dataclass
class Found:
    """What the database holds for one run's twins."""

    rows: int
    distinct_rows: int
    versions: dict[Key, Any]
    scores: dict[Key, Any]
    forecasts: dict[Key, Any]
    alert_rows: list[Key]  # (alert_id, version) of every alert_events row
    alerts: dict[Key, Any]  # (alert_id, version) → (event, state, updated_at), one per distinct key
    episodes: dict[str, Key]  # alert_id → (twin, kind, opened_at), from the alerts table
    alert_states: dict[str, Key]  # alert_id → (version, state) in the alerts table


def counts(conn: psycopg.Connection, like: str) -> dict[str, int]:
    """Row counts per table for twins matching ``like`` (cheap: for waiting)."""
    q = (
        "SELECT (SELECT count(*) FROM telemetry WHERE twin_id LIKE %(p)s) AS rows,"
        " (SELECT count(*) FROM twin_state_history WHERE twin_id LIKE %(p)s) AS versions,"
        " (SELECT count(*) FROM anomaly_scores WHERE twin_id LIKE %(p)s) AS scores,"
        " (SELECT count(*) FROM forecasts WHERE twin_id LIKE %(p)s) AS forecasts,"
        " (SELECT count(*) FROM alert_events WHERE twin_id LIKE %(p)s) AS alerts"
    )
    row = conn.execute(q, {"p": like}).fetchone()
    assert row is not None
    return dict(zip(("rows", "versions", "scores", "forecasts", "alerts"), row, strict=True))


def observe(conn: psycopg.Connection, like: str) -> Found:
    """Everything :func:`compare` needs, for twins matching ``like``."""
    p = (like,)
    rows, distinct = conn.execute(
        "SELECT count(*), count(DISTINCT (twin_id, sensor, ts)) FROM telemetry WHERE twin_id LIKE %s", p
    ).fetchone()
    versions = {
        (t, v): (at, _reported(rep))
        for t, v, at, rep in conn.execute(
            "SELECT twin_id, version, event_time, reported FROM twin_state_history WHERE twin_id LIKE %s", p
        )
    }
    scores = {
        (t, ts): (s, a, k)
        for t, ts, s, a, k in conn.execute(
            "SELECT twin_id, ts, score, is_anomaly, kind FROM anomaly_scores WHERE twin_id LIKE %s", p
        )
    }
    forecasts = {
        (t, s, ts, tt): v
        for t, s, ts, tt, v in conn.execute(
            "SELECT twin_id, sensor, ts, target_ts, predicted FROM forecasts WHERE twin_id LIKE %s", p
        )
    }
    events = conn.execute(
        "SELECT alert_id, version, event, state, ts FROM alert_events WHERE twin_id LIKE %s ORDER BY ts", p
    ).fetchall()
    episodes, states = {}, {}
    for aid, t, kind, opened, version, state in conn.execute(
        "SELECT alert_id, twin_id, kind, opened_at, version, state FROM alerts WHERE twin_id LIKE %s", p
    ):
        if aid in episodes:  # (alert_id, opened_at) is the key: one id opened twice is a duplicated episode
            episodes[f"{aid}#{opened.isoformat()}"] = (t, kind, opened)
        else:
            episodes[aid] = (t, kind, opened)
        states[aid] = (version, state)
    return Found(
        rows,
        distinct,
        versions,
        scores,
        forecasts,
        [(aid, v) for aid, v, *_ in events],
        {(aid, v): (e, s, ts) for aid, v, e, s, ts in events},
        episodes,
        states,
    )


@dataclass
class Tally:
    """One kind of output: expected, found, lost, duplicated, changed (and a few examples)."""

    kind: str
    expected: int
    found: int
    lost: int = 0
    duplicated: int = 0
    changed: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.lost == self.duplicated == self.changed == 0 and self.expected == self.found


def _keyed(kind: str, expected: dict[Key, Any], found: dict[Key, Any], extra_rows: int = 0) -> Tally:
    lost = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    changed = [k for k in expected if k in found and found[k] != expected[k]]
    t = Tally(kind, len(expected), len(found) + extra_rows, len(lost), len(extra) + extra_rows, len(changed))
    t.examples = [f"lost {k}" for k in lost[:3]] + [f"extra {k}" for k in extra[:3]]
    t.examples += [f"changed {k}: {expected[k]} → {found[k]}" for k in changed[:3]]
    return t


def _gaps(versions: Iterable[Key]) -> int:
    """Version numbers missing below each twin's newest one."""
    per: dict[str, list[int]] = defaultdict(list)
    for twin, v in versions:
        per[twin].append(v)
    return sum(max(vs) - len(set(vs)) for vs in per.values())


def after_the_run(expected: Expected, found: Found) -> Found:
    """``found`` without what is about the time after a twin's last reading: when the feed ends every
    twin falls silent, and the models' silence timers (wall time, docs/ml.md) publish a `silent`
    sensor fault a little later, which opens a sensor_fault alert or changes a live one. A run
    without faults does the same when it runs as long; a fault-free run computed without a clock
    does not. An alert with a version after the run keeps its earlier versions in the comparison,
    not its final state."""
    end = expected.last_ts

    def late(twin: str, ts: datetime) -> bool:
        return twin in end and ts > end[twin]

    twin_of = {aid: twin for aid, (twin, _kind, _opened) in found.episodes.items()}
    after = {k for k, (_e, _s, ts) in found.alerts.items() if late(twin_of.get(k[0], ""), ts)}
    touched = {aid for aid, _v in after}
    opened_after = {aid for aid, (twin, _kind, opened) in found.episodes.items() if late(twin, opened)}
    return Found(
        found.rows,
        found.distinct_rows,
        found.versions,
        {k: v for k, v in found.scores.items() if not late(k[0], k[1])},
        found.forecasts,
        [k for k in found.alert_rows if k not in after],
        {k: v for k, v in found.alerts.items() if k not in after},
        {aid: e for aid, e in found.episodes.items() if aid not in opened_after},
        {aid: st for aid, st in found.alert_states.items() if aid not in touched},
    )


def compare(expected: Expected, found: Found) -> list[Tally]:
    """Per kind of output, what the fault run lost, duplicated and changed against a fault-free run
    (outputs about the time after the last readings left out, :func:`after_the_run`)."""
    found = after_the_run(expected, found)
    rows = Tally("telemetry rows", expected.rows, found.rows)
    rows.lost = max(expected.rows - found.distinct_rows, 0)
    rows.duplicated = found.rows - found.distinct_rows + max(found.distinct_rows - expected.rows, 0)
    versions = _keyed("twin versions", expected.versions, found.versions)
    gaps = _gaps(found.versions)
    if gaps:
        versions.examples.append(f"{gaps} version numbers missing below a twin's newest")
    states = Tally("alert rows (final state)", len(expected.episodes), len(found.alert_states))
    last: dict[str, Key] = {}
    for (aid, v), (_e, state, _ts) in expected.alerts.items():
        if aid not in last or v > last[aid][0]:
            last[aid] = (v, state)
    judged = {a: vs for a, vs in last.items() if a in found.alert_states or a not in found.episodes}
    states.expected = len(judged)
    states.lost = sum(1 for a in judged if a not in found.alert_states)
    states.duplicated = sum(1 for a in found.alert_states if a not in last)
    changed = [a for a, vs in judged.items() if a in found.alert_states and found.alert_states[a] != vs]
    states.changed = len(changed)
    states.examples = [f"changed {a}: {judged[a]} → {found.alert_states[a]}" for a in changed[:3]]
    return [
        rows,
        versions,
        _keyed("anomaly scores", expected.scores, found.scores),
        _keyed("forecasts", expected.forecasts, found.forecasts),
        _keyed("alert versions", expected.alerts, found.alerts, extra_rows=len(found.alert_rows) - len(found.alerts)),
        _keyed("alert episodes", expected.episodes, found.episodes),
        states,
    ]


def table(tallies: list[Tally]) -> str:
    """A Markdown table of the tallies (and examples of what differs, below it)."""
    lines = ["| output | expected | found | lost | duplicated | changed |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {t.kind} | {t.expected:,} | {t.found:,} | {t.lost} | {t.duplicated} | {t.changed} |" for t in tallies]
    lines += [f"  {t.kind}: {e}" for t in tallies for e in t.examples]
    return "\n".join(lines)
