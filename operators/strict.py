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

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

STRICT = ConfigDict(extra="forbid")


class StrictModel(BaseModel):
    """A pydantic model that rejects unknown keys, and keys it once had with what replaced them.

    ``RETIRED`` maps a key the model no longer has to what to do instead; a configuration that still
    sets it is refused with that text (not the generic unknown-key error):

    >>> class Flow(StrictModel):
    ...     RETIRED: ClassVar[dict[str, str]] = {"poll_s": "polls are paced by `poll_interval_ms`; remove it"}
    >>> Flow.model_validate({"poll_s": 1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for Flow
      Value error, `poll_s` is gone: polls are paced by `poll_interval_ms`; remove it ...
    """

    model_config = STRICT
    RETIRED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _retired_keys(cls, data: Any) -> Any:
        if cls.RETIRED and isinstance(data, dict):
            for key, instead in cls.RETIRED.items():
                if key in data:
                    raise ValueError(f"`{key}` is gone: {instead}")
        return data
