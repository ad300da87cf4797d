"""A throwaway database on the shared PostgreSQL, migrated, dropped afterwards.

Import the fixture where needed: ``from tests.db_helpers import private_db  # noqa: F401``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from connectors.postgres.migrate import migrate
from twinflow.settings import Settings


def superuser_conninfo(s: Settings, dbname: str = "postgres") -> str:
    return s.postgres.conninfo(
        user="postgres", password=s.stack.postgres_superuser_password.get_secret_value(), dbname=dbname
    )


@pytest.fixture
def private_db(stack_settings: Settings) -> Iterator[Settings]:
    """Settings pointing at a fresh, migrated database owned by the application role."""
    name = f"tf_test_{uuid.uuid4().hex[:10]}"
    su = superuser_conninfo(stack_settings)
    with psycopg.connect(su, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(stack_settings.postgres.user)
            )
        )
    s = stack_settings.model_copy(update={"postgres": stack_settings.postgres.model_copy(update={"dbname": name})})
    try:
        migrate(s.postgres.conninfo(), "off")
        yield s
    finally:
        with psycopg.connect(su, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
