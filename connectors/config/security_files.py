"""The security files a deployment writes, read and validated: the desired-state policy, the subjects
(people and services with their public keys), the twin registry, and the CLI's signing key.

The operators hold what these files mean (:mod:`operators.security.authorization`,
:mod:`operators.security.request_auth`,
:mod:`operators.telemetry.registry`) and never read files; this module reads them. Mistakes raise
:class:`~connectors.config.errors.ConfigError` naming the file, the field and the fix.

>>> import tempfile, pathlib
>>> f = pathlib.Path(tempfile.mkdtemp()) / "twins.toml"
>>> _ = f.write_text('[twin.pump-1]\\nline = "a"\\n')
>>> load_twin_registry(f).attrs("pump-1")
{'line': 'a'}
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors.config.tomlfile import load_toml_model
from operators.security.authorization import Policy, PolicyFile
from operators.security.request_auth import Subjects, SubjectsFile
from operators.telemetry.registry import RegistryFile, TwinRegistry


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file (docs/security.md)."""
    return Policy(load_toml_model(path, PolicyFile, "policy").rule)


def load_subjects(path: Path) -> Subjects:
    """Read and validate a subjects file."""
    return Subjects.from_model(load_toml_model(path, SubjectsFile, "subjects"))


def load_twin_registry(path: Path) -> TwinRegistry:
    """Read and validate the twin registry (``security.twin_registry``)."""
    return TwinRegistry.from_model(load_toml_model(path, RegistryFile, "twin registry"))


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM (PKCS#8) file; ValueError with the reason otherwise."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise ValueError(f"cannot read the key file {path}: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key
