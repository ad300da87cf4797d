"""Compact pickled forms for what every twin's state holds (no heavy imports: the model configs use
it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import MISSING, fields
from operator import attrgetter
from typing import Any


def tuple_getter(names: Sequence[str]) -> Callable[[Any], tuple[Any, ...]]:
    """One call that reads ``names`` of an object as a tuple (``attrgetter``, which gives a bare
    value for one name and needs at least one).

    >>> tuple_getter(["real"])(2.0), tuple_getter(["real", "imag"])(2.0), tuple_getter([])(2.0)
    ((2.0,), (2.0, 0.0), ())
    """
    if len(names) > 1:
        return attrgetter(*names)
    get = attrgetter(*names) if names else None
    return (lambda obj: (get(obj),)) if get is not None else (lambda obj: ())


def pickled_by_fields(cls: type) -> type:
    """Class decorator for a slots dataclass (frozen or not) whose fields all go to ``__init__`` and
    that is part of every twin's state (window aggregates, model configs): it pickles as its class
    and field values in order (one tuple), without the Python calls of a dataclass's own
    ``__getstate__`` and half the size of pickle's default ``(None, {slot: value})``. Snapshots in
    the earlier forms still load, and an earlier version loads these (the same ``__init__``) as long
    as the fields keep their order.

    >>> from dataclasses import dataclass
    >>> @pickled_by_fields
    ... @dataclass(slots=True)
    ... class Agg:
    ...     count: int = 0
    ...     mean: float = 0.0
    >>> cls, values = Agg(3, 1.5).__reduce_ex__(5)  # what pickle stores, and calls to load it
    >>> values, cls(*values)
    ((3, 1.5), Agg(count=3, mean=1.5))
    """
    get = tuple_getter([f.name for f in fields(cls)])

    def __reduce_ex__(self: Any, protocol: int) -> tuple[type, tuple[Any, ...]]:
        return cls, get(self)

    cls.__reduce_ex__ = __reduce_ex__  # type: ignore[method-assign]
    return cls


class PickledCall:
    """A value that pickles as the call ``fn(*args)``: unpickling makes the call (``args`` may hold
    more of them). Lets a snapshot store data in a cheap form and have it rebuilt at load by functions
    that earlier versions have too. Pickled once: referenced twice, it loads as one object.

    >>> import pickle
    >>> absolute = PickledCall(list, PickledCall(map, abs, [-1, 2]))
    >>> first, second = pickle.loads(pickle.dumps([absolute, absolute]))
    >>> first, first is second
    ([1, 2], True)
    """

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return self.fn, self.args


def loads_shorter_layouts(cls: type) -> type:
    """Class decorator for a slots dataclass pickled in pickle's default form for slots,
    ``(None, {slot: value})``: a snapshot of an earlier layout, without the fields added since,
    loads with those fields at their defaults (pickle's own loading would leave them unset). Earlier
    versions load the new layout too (they set every slot the snapshot has).

    >>> from dataclasses import dataclass, field
    >>> @loads_shorter_layouts
    ... @dataclass(slots=True)
    ... class Run:
    ...     count: int = 0
    ...     seen: list = field(default_factory=list)
    >>> old = Run.__new__(Run); old.__setstate__((None, {"count": 3}))  # written before `seen` was added
    >>> new = Run.__new__(Run); new.__setstate__(Run(2, [1]).__reduce_ex__(5)[2])  # what pickle stores
    >>> old, new
    (Run(count=3, seen=[]), Run(count=2, seen=[1]))
    """
    defaults = [(f.name, f.default, f.default_factory) for f in fields(cls)]

    def __setstate__(self: Any, state: tuple[dict[str, Any] | None, dict[str, Any]] | dict[str, Any]) -> None:
        for part in state if isinstance(state, tuple) else (state,):
            for name, value in (part or {}).items():
                object.__setattr__(self, name, value)
        for name, default, factory in defaults:
            if not hasattr(self, name):
                object.__setattr__(self, name, default if factory is MISSING else factory())

    cls.__setstate__ = __setstate__  # type: ignore[attr-defined]
    return cls


class PickledBySlots:
    """Mixin for a class with ``__slots__`` that pickles as ``{slot: value}`` (a plain dict: an
    earlier version's snapshot loads as long as the names stay).

    >>> import pickle
    >>> from operators.ml.counters import Counters
    >>> counters = Counters()
    >>> counters.never.add("valve")
    >>> pickle.loads(pickle.dumps(counters)).never
    {'valve'}
    """

    __slots__ = ()

    def __getstate__(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
