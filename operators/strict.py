"""Configuration is strict: a key a model does not know is an error, never silently ignored.

One rule for every user-written input (settings sections, mapping, policy, twin registry files):
pydantic models inherit :class:`StrictModel`; dataclasses that pydantic validates set
``__pydantic_config__ = STRICT`` (plain ``dataclasses``) or pass ``config=STRICT`` (pydantic
dataclasses). ``tests/unit/test_config_errors.py`` checks every model reachable from the settings.

>>> class Section(StrictModel):
...     host: str = "127.0.0.1"
>>> Section.model_validate({"hostname": "db"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for Section
hostname
  Extra inputs are not permitted ...
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

STRICT = ConfigDict(extra="forbid")


class StrictModel(BaseModel):
    """A pydantic model that rejects unknown keys."""

    model_config = STRICT
