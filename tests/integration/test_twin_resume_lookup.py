"""A twin without a snapshot resumes from its newest stored version (``StoredTwins.latest``): that
lookup reads the history by its key, also for twins first seen long after the flow started, when
the history has grown (a plan made while it was empty would scan the whole table every time)."""

from __future__ import annotations

import time

import psycopg
import pytest

from connectors.postgres.twin_resume import StoredTwins
from tests.db_helpers import private_db  # noqa: F401
from twinflow.settings import Settings

pytestmark = pytest.mark.integration

GROW = (
    "INSERT INTO twin_state_history (twin_id, version, event_time, status, mode, learn, reported, desired, delta,"
    " conflicts, commands, consistency_score, change)"
    " SELECT 'grown-' || (g % 200), g, now(), 'synchronized', 'normal', true, '{}', '{}', '{}', '{}', '{}', 1.0, '{}'"
    " FROM generate_series(1, 20000) AS g"
)


def scans(conninfo: str) -> tuple[int, int]:
    """(sequential, index) scans of twin_state_history so far, as the sessions have reported them (a
    session reports at the latest when it ends)."""
    with psycopg.connect(conninfo, autocommit=True) as db:
        row = db.execute(
            "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'twin_state_history'"
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_twins_first_seen_late_are_read_by_key(private_db: Settings) -> None:  # noqa: F811
    conninfo = private_db.postgres.conninfo()
    with psycopg.connect(conninfo, autocommit=True) as db:
        db.execute("VACUUM (ANALYZE) twin_state_history")  # an empty history, known to be empty
    seq0, idx0 = scans(conninfo)
    stored = StoredTwins(conninfo)
    try:
        # The flow's first twins: enough lookups for psycopg to prepare the statement (after 5) and
        # for PostgreSQL to plan it once for all parameters (after 5 more), on the empty history.
        for i in range(20):
            assert stored.latest(f"early-{i}") is None
        with psycopg.connect(conninfo) as db:
            db.execute(GROW)
        late = [stored.latest(f"grown-{i}") for i in range(20)]
    finally:
        stored.close()  # its scans are reported now
    deadline = time.monotonic() + 10
    while sum(scans(conninfo)) < seq0 + idx0 + 40 and time.monotonic() < deadline:
        time.sleep(0.1)
    seq, idx = scans(conninfo)
    assert [row["version"] for row in late] == [19800 + i if i else 20000 for i in range(20)]
    # the 20 lookups in the empty history scanned it (nothing to read by key), the 20 later ones read by key
    assert (seq - seq0, idx - idx0) == (20, 20)
