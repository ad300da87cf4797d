"""Every TOML example in the README and docs/ is accepted by the loader of the file it shows (the
settings, a bridge mapping, the policy, the subjects file, the twin registry): a user who copies
one gets no unknown-key or type error. Each example block is classified below; a new block must be.
"""

from __future__ import annotations

import base64
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors.bridges.mapping.loading import load_mapping, parse_mapping
from connectors.config.errors import ConfigError
from connectors.config.security_files import load_policy, load_subjects, load_twin_registry
from twinflow.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# (document, the block's first line) → the file the example shows
KINDS = {
    ("README.md", "# twinflow.toml"): "settings",
    ("docs/alerts.md", "[alerts.rules]"): "settings",
    ("docs/ml.md", "[ml]"): "settings",
    ("docs/ml.md", "[ml.counters]"): "settings",
    ("docs/ml.md", "[ml.states]"): "settings",
    ("docs/reconciliation.md", "[twin]"): "settings",
    ("docs/connectors.md", "# line1.toml — bottling line 1"): "mapping",
    ("docs/connectors.md", "[opcua]"): "mapping section",
    ("docs/api.md", "[subject.api-gateway]"): "subjects",
    ("docs/security.md", "# security.subjects_file"): "subjects",
    ("docs/security.md", '[twin."pump-001"]'): "twin registry",
    ("docs/security.md", "[[rule]]"): "policy",
}


def examples() -> list[tuple[str, str, str]]:
    """(document:line, first line, text) of each ```toml block."""
    out = []
    for path in DOCS:
        text = path.read_text()
        for m in re.finditer(r"^```toml\n(.*?)^```", text, re.S | re.M):
            block = m.group(1)
            first = next(line.strip() for line in block.splitlines() if line.strip())
            out.append((f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}", first, block))
    return out


EXAMPLES = examples()


def public_key() -> str:
    raw = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return base64.b64encode(raw).decode()


def with_keys(block: str) -> str:
    """A subjects example with real public keys where it shows placeholders (``"<…>"``, ``"..."``)."""
    return re.sub(r"^(public_keys\s*=\s*)\[[^\]]*\]", lambda m: f'{m.group(1)}["{public_key()}"]', block, flags=re.M)


def load_as(kind: str, block: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    path = tmp / "example.toml"
    path.write_text(with_keys(block) if kind == "subjects" else block)
    if kind == "settings":
        monkeypatch.setenv("TWINFLOW_CONFIG", str(path))
        return load_settings()
    if kind == "mapping section":  # sections of a mapping: into the example plant's
        plant = tomllib.loads((ROOT / "config" / "plant.toml").read_text())
        for section, fields in tomllib.loads(block).items():
            plant[section] = {**plant.get(section, {}), **fields}
        return parse_mapping(plant, path)
    loaders: dict[str, Callable[[Path], object]] = {
        "mapping": load_mapping,
        "policy": load_policy,
        "subjects": load_subjects,
        "twin registry": load_twin_registry,
    }
    return loaders[kind](path)


def test_every_example_is_classified() -> None:
    found = {(where.rsplit(":", 1)[0], first) for where, first, _ in EXAMPLES}
    assert found == set(KINDS), "classify new TOML examples in KINDS (or remove stale entries)"


@pytest.mark.parametrize(("where", "first", "block"), EXAMPLES, ids=[w for w, _, _ in EXAMPLES])
def test_documented_example_loads(
    where: str, first: str, block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = KINDS[(where.rsplit(":", 1)[0], first)]
    try:
        load_as(kind, block, tmp_path, monkeypatch)
    except (ConfigError, ValueError) as exc:
        pytest.fail(f"{where}: the {kind} example is refused:\n{exc}")


def test_a_refused_example_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for kind, block in [("settings", "[twin]\nwindow_s = [1]\n"), ("policy", '[[rule]]\nname = "x"\nverb = 1\n')]:
        with pytest.raises((ConfigError, ValueError)):
            load_as(kind, block, tmp_path, monkeypatch)
