"""Fixtures for twin integration tests: a private database and private topics per test.

The shared stack is used by several people at once, so the tests never touch the shared
`twinflow` database (its migration history belongs to the main line) nor shared topics.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from connectors.postgres.migrate import migrate
from flows.twin_settings import TwinSettings
from twinflow.settings import AlertSettings, Settings, Topics, load_settings


def _superuser(s: Settings) -> str:
    return s.postgres.conninfo(
        user="postgres", password=s.stack.postgres_superuser_password.get_secret_value(), dbname="postgres"
    )


@pytest.fixture(scope="session")
def twin_db() -> Iterator[Settings]:
    """Stack settings pointing at a fresh, migrated database of this test session."""
    s = load_settings()
    name = f"twinflow_recon_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_superuser(s), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} OWNER {s.postgres.user}")
    s = s.model_copy(update={"postgres": s.postgres.model_copy(update={"dbname": name})})
    migrate(s.postgres.conninfo(), "off")
    yield s
    with psycopg.connect(_superuser(s), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def alert_settings_for(sfx: str, **extra: Any) -> AlertSettings:
    """Alert settings whose topics are this test's own (suffix ``sfx``, 1 partition each), with ``extra``."""
    return AlertSettings(
        topic=f"test.alerts.{sfx}",
        actions_topic=f"test.alert_actions.{sfx}",
        anomalies_topic=f"test.scores.{sfx}",
        failures_topic=f"test.failures.{sfx}",
        forecasts_topic=f"test.forecasts.{sfx}",
        status_topic=f"test.status.{sfx}",
        suppression_topic=f"test.suppression.{sfx}",
        partitions=1,
        **extra,
    )


def twin_settings_for(base: Settings, policy: dict[str, Any] | None = None, **twin: Any) -> Settings:
    """``base`` with topics of its own (1 partition each: a deterministic order) and the given policy."""
    from connectors.kafka.clients import ensure_topics

    sfx = uuid.uuid4().hex[:10]
    topics = Topics(raw=f"test.raw.{sfx}", dlq=f"test.dlq.{sfx}", raw_partitions=1)
    tw = TwinSettings.model_validate(
        {
            "desired_topic": f"test.desired.{sfx}",
            "commands_topic": f"test.commands.{sfx}",
            "acks_topic": f"test.acks.{sfx}",
            "state_topic": f"test.state.{sfx}",
            "desync_topic": f"test.desync.{sfx}",
            "late_topic": f"test.late.{sfx}",
            "outcomes_topic": f"test.outcomes.{sfx}",
            "partitions": 1,
            "policy": policy or {},
            **twin,
        }
    )
    s = base.model_copy(update={"topics": topics, "twin": tw})
    ensure_topics(s)
    return s


def delete_topics(s: Settings) -> None:
    from connectors.kafka.clients import delete_topics as delete
    from connectors.kafka.clients import twin_topic_specs

    delete(s, [s.topics.raw, s.topics.dlq] + [t.name for t in twin_topic_specs(s)])


def settings_env(s: Settings) -> dict[str, str]:
    """Environment variables that reproduce ``s`` in a child process (pydantic-settings)."""
    tw = s.twin
    return {
        "TWINFLOW_POSTGRES__DBNAME": s.postgres.dbname,
        "TWINFLOW_TOPICS__RAW": s.topics.raw,
        "TWINFLOW_TOPICS__DLQ": s.topics.dlq,
        "TWINFLOW_TOPICS__RAW_PARTITIONS": str(s.topics.raw_partitions),
        "TWINFLOW_TWIN": tw.model_dump_json(),
    }
