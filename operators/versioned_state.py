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

from array import array
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, ClassVar

import numpy as np

from operators.pickled import tuple_getter

_SLOTS: dict[type, tuple[str, ...]] = {}
_ROWS: dict[type, dict[str, PackedRows]] = {}
_LAYOUTS: dict[type, str] = {}


class PackedRows:
    """An attribute kept as rows of the object's one 2-D array ``_packed`` (one row per vector, a
    column per sensor) instead of an array object of its own (112 bytes of header each): reading
    gives a view, assigning copies the values in. :func:`slot_state` pickles the one array with its
    row layout (:func:`rows_layout`); :func:`restore_slots` reads a snapshot of another row layout,
    or of the older one array per attribute, row by row.

    >>> class Levels:
    ...     __slots__ = ("_packed",)
    ...     low, high = PackedRows(0), PackedRows(1)
    >>> x = Levels(); x._packed = np.zeros((2, 3))
    >>> x.high = [1.0, 2.0, 3.0]; x.low += x.high
    >>> x._packed.tolist(), slot_state(x)["_rows"]
    ([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], 'low:0:1 high:1:2')
    >>> class Swapped:  # a later layout: the rows trade places
    ...     __slots__ = ("_packed",)
    ...     high, low = PackedRows(0), PackedRows(1)
    >>> y = Swapped.__new__(Swapped); restore_slots(y, slot_state(x))
    >>> y.high.tolist(), y._packed.tolist()
    ([1.0, 2.0, 3.0], [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    >>> restore_slots(y, {"low": np.zeros(3), "high": np.ones(3)})  # one array per attribute (older)
    >>> y._packed.tolist()
    [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    """

    __slots__ = ("index", "start", "stop")

    def __init__(self, start: int, count: int | None = None) -> None:
        self.index: int | slice = start if count is None else slice(start, start + count)
        self.start = start
        self.stop = start + (1 if count is None else count)

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._packed[self.index]

    def __set__(self, obj: Any, value: Any) -> None:
        obj._packed[self.index] = value


def packed_zeros(cls: type, width: int) -> np.ndarray:
    """A zero ``_packed`` array for the :class:`PackedRows` of ``cls``, ``width`` columns."""
    return np.zeros((max(row.stop for row in packed_rows(cls).values()), width))


def packed_rows(cls: type) -> dict[str, PackedRows]:
    """The :class:`PackedRows` attributes of ``cls`` and its bases."""
    rows = _ROWS.get(cls)
    if rows is None:
        found = ((k, v) for c in reversed(cls.__mro__) for k, v in vars(c).items() if isinstance(v, PackedRows))
        rows = _ROWS[cls] = dict(found)
    return rows


_CANONICAL: dict[Any, Any] = {}


def canonical(config: Any) -> Any:
    """One shared instance per distinct configuration (frozen, hashable dataclasses): unpickled
    states would each hold their own copies of the same settings (≈ 3 KiB per twin)."""
    try:
        return _CANONICAL.setdefault(config, config)
    except TypeError:  # not hashable: kept as it is
        return config


def doubles(n: int) -> array[float]:
    """``n`` zeros in an exactly sized ``array('d')`` (``array('d', bytes(...))`` keeps spare room)."""
    return array("d", [0.0]) * n


def slots_of(cls: type) -> tuple[str, ...]:
    """Every slot name of ``cls`` and its bases."""
    names = _SLOTS.get(cls)
    if names is None:
        found = (s for c in reversed(cls.__mro__) for s in c.__dict__.get("__slots__", ()))
        names = _SLOTS[cls] = tuple(dict.fromkeys(s for s in found if s not in ("__dict__", "__weakref__")))
    return names


_UNSET = object()
_CONFIG_DATA: dict[Any, dict[str, Any]] = {}


def config_data(config: Any) -> dict[str, Any]:
    """``dataclasses.asdict(config)``, made once per distinct configuration (frozen, hashable
    dataclasses; the states of every twin share a few): a snapshot pickles it with each state, and
    ``asdict`` (recursive, deep-copying) was a third of a model state's snapshot time. Read only.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Cfg:
    ...     k: int = 3
    >>> config_data(Cfg()), config_data(Cfg()) is config_data(Cfg())
    ({'k': 3}, True)
    """
    try:
        data = _CONFIG_DATA.get(config)
    except TypeError:  # not hashable: made each time
        return asdict(config)
    if data is None:
        data = _CONFIG_DATA[config] = asdict(config)
    return data


_READERS: dict[type, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {}


def _reader(cls: type) -> tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]:
    """The slot names :func:`slot_state` keeps and one getter for all of them."""
    reader = _READERS.get(cls)
    if reader is None:
        names = tuple(name for name in slots_of(cls) if name != "_packed")
        reader = _READERS[cls] = (names, tuple_getter(names))
    return reader


def slot_state(obj: Any) -> dict[str, Any]:
    """An object's attributes as the dict its plain-``__dict__`` layout pickled (slots that are set,
    and the ``__dict__`` if it has one), so snapshots of either layout load into either."""
    cls = type(obj)
    names, read = _reader(cls)
    try:  # every slot set (the usual case): one call reads them all
        state = dict(zip(names, read(obj), strict=True))
    except AttributeError:
        state = {name: value for name in names if (value := getattr(obj, name, _UNSET)) is not _UNSET}
    if hasattr(obj, "__dict__"):
        state.update(obj.__dict__)
    if hasattr(obj, "_packed"):
        state["_packed"] = obj._packed
        state["_rows"] = rows_layout(cls)
    return state


def rows_layout(cls: type) -> str:
    """The :class:`PackedRows` of ``cls`` as text, ``name:start:stop`` each (saved with ``_packed``)."""
    layout = _LAYOUTS.get(cls)
    if layout is None:
        layout = _LAYOUTS[cls] = " ".join(f"{name}:{row.start}:{row.stop}" for name, row in packed_rows(cls).items())
    return layout


def _rows_of(packed: np.ndarray, layout: str) -> dict[str, np.ndarray]:
    """A ``_packed`` array of the row layout ``layout`` (:func:`rows_layout`) as one array per row name."""
    rows = (part.split(":") for part in layout.split())
    return {name: packed[int(a)] if int(b) - int(a) == 1 else packed[int(a) : int(b)] for name, a, b in rows}


def restore_slots(obj: Any, state: dict[str, Any]) -> None:
    """Set the attributes of a :func:`slot_state` dict; names the layout no longer has (attributes
    of an older layout) are left out when the object has no ``__dict__``. :class:`PackedRows`: the
    ``_packed`` array as it is when its row layout is this class's, else row by row into a new one."""
    if hasattr(obj, "__dict__"):
        obj.__dict__.update(state)
        return
    cls = type(obj)
    names, rows = slots_of(cls), packed_rows(cls)
    layout = state.get("_rows")
    if rows and layout is not None and layout != rows_layout(cls):  # another row layout
        state = {**_rows_of(state.pop("_packed"), layout), **state}
    if rows and any(name in state for name in rows):  # one array for them, then each into its rows
        obj._packed = packed_zeros(cls, next(np.shape(state[name])[-1] for name in rows if name in state))
    for name, value in state.items():
        if name in names or name in rows:
            setattr(obj, name, value)


class VersionedState:
    """Mixin: ``CONFIG`` is the config dataclass, ``STATE_VERSION`` the layout version, ``READS``
    the earlier layouts it still reads (converted by :meth:`_upgrade`, or by the class's own
    ``__setstate__`` for attributes its slots no longer have). Subclasses
    may declare ``__slots__`` (no per-object ``__dict__``: a large saving for states with many
    attributes); they pickle as the same dict either way."""

    __slots__ = ()
    CONFIG: ClassVar[type]
    STATE_VERSION: ClassVar[int]
    READS: ClassVar[tuple[int, ...]] = ()
    config: Any

    def __getstate__(self) -> dict[str, Any]:
        state = slot_state(self)
        state["config"] = config_data(self.config)
        state["_v"] = self.STATE_VERSION
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        version = state.pop("_v", None)
        config = self._config_from(state.pop("config"))
        if version != self.STATE_VERSION and version not in self.READS:  # unknown: start afresh, not misread
            self._start_afresh(config, state)
            return
        restore_slots(self, state)
        self.config = config
        self._upgrade()

    @classmethod
    def _config_from(cls, raw: dict[str, Any]) -> Any:
        return canonical(cls.CONFIG(**raw))

    def _start_afresh(self, config: Any, state: dict[str, Any]) -> None:
        self.__init__(config)  # type: ignore[misc]

    def _upgrade(self) -> None:
        """Fill attributes added within the current version (older snapshots lack them), convert a
        layout of ``READS``."""
