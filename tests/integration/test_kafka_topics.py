"""Creating topics: once `ensure_topics` returns, a client started right after finds them."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import AdminClient

from connectors.kafka.clients import TopicSpec, client_config, ensure_topics
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
        admin = AdminClient(client_config(stack_settings))
        for fut in admin.delete_topics(names).values():
            fut.result()
