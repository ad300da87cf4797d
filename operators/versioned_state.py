"""Versioned pickling for model state kept in Bytewax snapshots.

A state object pickles its ``config`` as plain data and a layout version; a snapshot of another
layout (written by an older or newer twinflow) starts afresh instead of being misread.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Cfg:
...     k: int = 1
>>> class Counter(VersionedState):
...     CONFIG = Cfg
...     STATE_VERSION = 1
...     def __init__(self, config=None):
...         self.config, self.n = config or Cfg(), 0
>>> def round_trip(obj):  # what pickle does with the state
...     back = Counter.__new__(Counter)
...     back.__setstate__(obj.__getstate__())
...     return back
>>> c = Counter(Cfg(k=3)); c.n = 5
>>> back = round_trip(c)
>>> back.config.k, back.n
(3, 5)
>>> snapshot = c.__getstate__()
>>> Counter.STATE_VERSION = 2  # a new layout: an old snapshot starts afresh, with its config
>>> back = Counter.__new__(Counter); back.__setstate__(snapshot)
>>> back.config.k, back.n
(3, 0)
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar


class VersionedState:
    """Mixin: ``CONFIG`` is the config dataclass, ``STATE_VERSION`` the layout version."""

    CONFIG: ClassVar[type]
    STATE_VERSION: ClassVar[int]
    config: Any

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["config"] = asdict(self.config)
        state["_v"] = self.STATE_VERSION
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        version = state.pop("_v", None)
        config = self._config_from(state.pop("config"))
        if version != self.STATE_VERSION:  # unknown layout: start afresh rather than misread it
            self._start_afresh(config, state)
            return
        self.__dict__.update(state)
        self.config = config
        self._upgrade()

    @classmethod
    def _config_from(cls, raw: dict[str, Any]) -> Any:
        return cls.CONFIG(**raw)

    def _start_afresh(self, config: Any, state: dict[str, Any]) -> None:
        self.__init__(config)  # type: ignore[misc]

    def _upgrade(self) -> None:
        """Fill attributes added within the current version (older snapshots lack them)."""
