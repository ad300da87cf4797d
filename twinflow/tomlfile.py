"""Load a TOML file into a pydantic model, with errors that name the file, the field and the fix."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from twinflow.settings import ConfigError

M = TypeVar("M", bound=BaseModel)


def load_toml_model(path: Path, model: type[M], what: str) -> M:
    """Parse ``path`` as TOML and validate it as ``model``; raise :class:`ConfigError` otherwise.

    >>> import tempfile, pydantic
    >>> class Cfg(pydantic.BaseModel):
    ...     n: int
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     bad = Path(tmp) / "example.toml"
    ...     _ = bad.write_text('n = "x"')
    ...     load_toml_model(bad, Cfg, "example")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    twinflow.settings.ConfigError: invalid example file /...example.toml:
      n: Input should be a valid integer...
    """
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{what} file {path}: cannot read it ({exc.strerror}); fix the path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} file {path}: not valid TOML: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [f"invalid {what} file {path}:"]
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {field}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None
