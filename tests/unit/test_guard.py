from datetime import UTC, datetime

import pytest

from connectors.config.security_files import load_twin_registry
from operators.records.envelope import Envelope, Rejected
from operators.telemetry.guard import IngestGuard
from operators.telemetry.registry import TwinRegistry
from twinflow.settings import ConfigError

T0 = datetime(2026, 11, 25, tzinfo=UTC)


def env(twin="p1", seq=1, **readings) -> Envelope:
    return Envelope(v=1, twin_id=twin, ts=T0, seq=seq, source="t", readings=readings or {"a": 1.0})


def test_registry_from_file_exact_and_patterns(tmp_path):
    f = tmp_path / "twins.toml"
    f.write_text('[twin."p1"]\ntype = "pump"\n\n[[pattern]]\nmatch = "sim-*"\ntype = "sim"\nsite = "lab"\n')
    reg = load_twin_registry(f)
    assert reg.attrs("p1") == {"type": "pump"}
    assert reg.attrs("sim-7") == {"type": "sim", "site": "lab"}
    assert reg.attrs("other") is None and not reg.known("sim")


def test_registry_mistakes_name_file_and_field(tmp_path):
    f = tmp_path / "twins.toml"
    f.write_text('[[pattern]]\ntype = "x"\n')
    with pytest.raises(ConfigError) as exc:
        load_twin_registry(f)
    assert str(f) in str(exc.value) and "[[pattern]] entry 1 match: Field required" in str(exc.value)
    f.write_text("[twin\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_twin_registry(f)


def test_unknown_twin_is_rejected_before_its_seq_is_remembered():
    g = IngestGuard(TwinRegistry({"p1": {}}, []))
    with pytest.raises(Rejected) as exc:
        g.admit(env("p2"))
    assert exc.value.reason == "unknown_twin"
    assert g.admit(env("p1"))


def test_duplicates_identical_absorbed_different_rejected():
    g = IngestGuard()
    assert g.admit(env(seq=1, a=1.0, b=2.0))
    assert not g.admit(env(seq=1, b=2.0, a=1.0))  # same content, other order
    with pytest.raises(Rejected) as exc:
        g.admit(env(seq=1, a=1.5, b=2.0))
    assert exc.value.reason == "duplicate_seq"
    assert g.admit(env("p2", seq=1))  # per twin
    assert g.absorbed == 1


def test_memory_is_bounded_and_zero_disables():
    g = IngestGuard(max_entries=4)
    for seq in range(10):
        g.admit(env(seq=seq))
    assert g.remembered() <= 4
    with pytest.raises(Rejected):
        g.admit(env(seq=9, a=9.0))  # recent: still remembered
    assert g.admit(env(seq=0, a=9.0))  # forgotten: accepted again
    off = IngestGuard(max_entries=0)
    assert off.admit(env()) and off.admit(env(a=5.0))
