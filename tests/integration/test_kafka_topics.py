"""Creating topics: once `ensure_topics` returns, a client started right after finds them; once
`delete_topics` returns, they are gone."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient

from connectors.kafka.clients import TopicSpec, client_config, delete_topics, ensure_topics
from connectors.kafka.source import kafka_source

pytestmark = pytest.mark.integration


def test_created_topics_are_listed_with_every_partition_at_once(stack_settings) -> None:
    """A flow listing its partitions right after the topics were made (what `make bench` and the
    tests do) must not meet "Unknown topic or partition": several rounds, fresh topics each time."""
    names = [f"test.ensure.{uuid.uuid4().hex[:10]}" for _ in range(4)]
    try:
        for name in names:
            assert ensure_topics(stack_settings, [TopicSpec(name, 4, {})]) == [name]
            source = kafka_source(stack_settings, [name], tail=False)
            assert sorted(source.list_parts()) == [f"{i}-{name}" for i in range(4)]
        assert ensure_topics(stack_settings, [TopicSpec(n, 4, {}) for n in names]) == []  # idempotent
    finally:
        delete_topics(stack_settings, names)


def test_deleted_topics_are_gone_when_delete_topics_returns(stack_settings) -> None:
    """Benchmarks and tests clean up with it right before their process ends: the deletion must have
    reached the broker by then (an AdminClient dropped at once may never send it); deleting a topic
    that is gone already is no error."""
    names = [f"test.delete.{uuid.uuid4().hex[:10]}" for _ in range(3)]
    ensure_topics(stack_settings, [TopicSpec(n, 2, {}) for n in names])
    assert delete_topics(stack_settings, [*names, names[0]]) == sorted(names)
    admin = AdminClient(client_config(stack_settings))
    deadline = time.monotonic() + 10  # the broker's metadata follows its controller within moments
    while set(names) & set(admin.list_topics(timeout=10).topics) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(names) & set(admin.list_topics(timeout=10).topics)
    assert delete_topics(stack_settings, names) == []
