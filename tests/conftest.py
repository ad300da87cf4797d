"""Shared fixtures. Integration tests use the real local stack; a missing service is an error."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from twinflow.settings import Settings, Topics, load_settings

REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The shared labelled data (../shared/data next to the repo, or $TWINFLOW_DATA_DIR)."""
    return Path(os.environ.get("TWINFLOW_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    """Settings of the running local stack; starts missing services (and fails if it cannot)."""
    from twinflow.stack import services

    s = load_settings()
    for svc in services(s):
        if not (svc.running() and svc.healthy()):
            svc.up()
    return s


@pytest.fixture
def settings(stack_settings: Settings) -> Iterator[Settings]:
    """Stack settings with topics of this test's own, deleted afterwards."""
    from confluent_kafka.admin import AdminClient

    from connectors.kafka.clients import client_config, ensure_topics

    suffix = uuid.uuid4().hex[:10]
    topics = Topics(raw=f"test.raw.{suffix}", dlq=f"test.dlq.{suffix}", raw_partitions=4)
    s = stack_settings.model_copy(update={"topics": topics})
    ensure_topics(s)
    yield s
    admin = AdminClient(client_config(s))  # kept alive until the deletion is confirmed
    for fut in admin.delete_topics([topics.raw, topics.dlq]).values():
        fut.result(30)


@pytest.fixture
def unique() -> str:
    """A short unique id for twin ids and names in this test."""
    return uuid.uuid4().hex[:8]


from tests.db_helpers import private_db  # noqa: E402, F401  (fixture: a throwaway migrated database)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``-n N --dist loadgroup`` (``make test``): each test file goes whole to one worker, so its
    module fixtures (a plant, flows, a private stack) start once; tests marked ``xdist_group(name)``
    go to one worker together whatever their file (e.g. ``demo``: every demo empties the same demo
    database). Without ``--dist loadgroup`` xdist schedules as it would."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class FileOrGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            group = super()._split_scope(nodeid)  # the group's name, else the whole node id
            return group if group != nodeid else nodeid.split("::", 1)[0]

    return FileOrGroupScheduling(config, log)
