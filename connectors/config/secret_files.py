"""Secrets kept in files (passwords of Kafka, PostgreSQL, MQTT): read once, never logged.

>>> import tempfile, pathlib
>>> f = pathlib.Path(tempfile.mkdtemp()) / "pw"
>>> _ = f.write_text("s3cret\\n")
>>> read_secret_file(f, "postgres.password_file").get_secret_value()
's3cret'
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr


def read_secret_file(path: Path, field: str) -> SecretStr:
    """A secret from a file (trailing newline stripped); errors name the field, never the content."""
    try:
        return SecretStr(Path(path).read_text().rstrip("\r\n"))
    except OSError as exc:
        raise ValueError(f"{field}: cannot read {path}: {exc.strerror}") from None
