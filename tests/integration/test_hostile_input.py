"""≥ 50 abusive messages through the real flow: each in the DLQ with its reason, nothing crashes,
every valid message between them lands once (shared Kafka and PostgreSQL)."""

from __future__ import annotations

import pytest

from tests.dlq_helpers import run_corpus
from tests.hostile_corpus import abusive
from tests.integration.test_dead_letters import malformed
from twinflow.settings import SecuritySettings

pytestmark = pytest.mark.integration


def test_hostile_corpus_goes_to_dlq_and_valid_messages_land(settings, unique, tmp_path):
    twin = f"hostile-{unique}"
    registry = tmp_path / "twins.toml"
    registry.write_text(f'[twin."{twin}"]\ntype = "pump"\n')
    s = settings.model_copy(update={"security": SecuritySettings(twin_registry=registry)})
    cases = abusive(twin) + malformed(twin)
    assert len({c.kind for c in cases}) == len(cases) >= 50
    assert {"unknown_twin", "duplicate_seq", "key_too_large", "too_large"} <= {c.reason for c in cases}
    # The broker accepts up to 2 MiB; the producer must too, to deliver the 1.5 MB message.
    run_corpus(s, twin, cases, **{"message.max.bytes": 2_000_000})
