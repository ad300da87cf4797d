"""Load a TOML file into a pydantic model, with errors that name the file, the section, the key and
the fix (unknown keys included, with a close known key; syntax errors with line and column)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from connectors.config.errors import ConfigError, problems, read_toml

M = TypeVar("M", bound=BaseModel)


def load_toml_model(path: Path, model: type[M], what: str) -> M:
    """Parse ``path`` as TOML and validate it as ``model``; raise :class:`ConfigError` otherwise.

    >>> import tempfile
    >>> from operators.strict import StrictModel
    >>> class Cfg(StrictModel):
    ...     limit: int = 1
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     bad = Path(tmp) / "example.toml"
    ...     _ = bad.write_text('limt = 2')
    ...     load_toml_model(bad, Cfg, "example")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    connectors.config.errors.ConfigError: invalid example file /...example.toml:
      top level `limt`: unknown key, did you mean `limit`? Rename it to `limit` or remove it.
    """
    try:
        data = read_toml(path, what)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [f"invalid {what} file {path}:", *(f"  {p.line()}" for p in problems(exc, model))]
        raise ConfigError("\n".join(lines)) from None
