"""The optional registry of known twins: which twin ids may send telemetry, and their attributes.

A TOML file (``security.twin_registry``) lists twins by id and by glob pattern; the
attributes (``type``, ``site``, …) feed the desired-state policy (:mod:`operators.security.authorization`)::

    [twin."pump-001"]
    type = "pump"
    site = "north"

    [[pattern]]          # every twin whose id matches, in file order; the first match wins
    match = "sim-pump-*"
    type = "pump"

>>> reg = TwinRegistry.from_dict({"twin": {"p1": {"type": "pump"}}, "pattern": [{"match": "s-*"}]})
>>> reg.attrs("p1"), reg.known("s-9"), reg.known("other")
({'type': 'pump'}, True, False)
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from operators.strict import StrictModel

Attrs = dict[str, str | int | float | bool]


class _Pattern(BaseModel):
    model_config = ConfigDict(extra="allow")
    match: str = Field(min_length=1)


class RegistryFile(StrictModel):
    twin: dict[str, Attrs] = Field(default_factory=dict)
    pattern: list[_Pattern] = Field(default_factory=list)


class TwinRegistry:
    """Exact ids are a dict lookup; pattern results are cached (bounded), so the hot path stays O(1)."""

    def __init__(self, twins: dict[str, Attrs], patterns: list[tuple[str, Attrs]], cache: int = 100_000):
        self._twins = twins
        self._patterns = patterns
        self._cache: dict[str, Attrs | None] = {}
        self._cache_max = cache

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TwinRegistry:
        parsed = RegistryFile.model_validate(data)
        return cls.from_model(parsed)

    @classmethod
    def from_model(cls, parsed: RegistryFile) -> TwinRegistry:
        patterns = [(p.match, dict(p.model_extra or {})) for p in parsed.pattern]
        return cls(dict(parsed.twin), patterns)

    def attrs(self, twin_id: str) -> Attrs | None:
        """The twin's attributes (``{}`` when it has none), or None for an unknown twin."""
        found = self._twins.get(twin_id)
        if found is not None:
            return found
        if twin_id in self._cache:
            return self._cache[twin_id]
        found = next((attrs for pat, attrs in self._patterns if fnmatchcase(twin_id, pat)), None)
        if len(self._cache) >= self._cache_max:
            self._cache.clear()
        self._cache[twin_id] = found
        return found

    def known(self, twin_id: str) -> bool:
        return self.attrs(twin_id) is not None

    def children(self) -> dict[str, list[str]]:
        """Parent asset → the twins that name it as ``parent`` (exact entries; alarm suppression).

        >>> TwinRegistry.from_dict({"twin": {"p1": {"parent": "line-1"}, "p2": {"parent": "line-1"}}}).children()
        {'line-1': ['p1', 'p2']}
        """
        out: dict[str, list[str]] = {}
        for twin_id, attrs in self._twins.items():
            if attrs.get("parent"):
                out.setdefault(str(attrs["parent"]), []).append(twin_id)
        return out


def twin_attributes(twin_id: str, registry: TwinRegistry | None, type_of: Callable[[str], str | None]) -> Attrs:
    """What the fleet lists of a twin (the API's ``/twins``, ``twinflow twin list``): its registry
    attributes, and where they name no ``type``, the type ``type_of`` gives it (the twin policy's).

    >>> reg = TwinRegistry.from_dict({"twin": {"p1": {"site": "north"}}})
    >>> twin_attributes("p1", reg, lambda t: "pump"), twin_attributes("x", None, lambda t: None)
    ({'site': 'north', 'type': 'pump'}, {})
    """
    attrs = (registry.attrs(twin_id) if registry is not None else None) or {}
    if "type" not in attrs and (kind := type_of(twin_id)) is not None:
        attrs = {**attrs, "type": kind}
    return attrs


class FleetPage:
    """One page of the fleet list (``GET /api/v1/twins``, ``twinflow twin list``) read in batches of the
    database's fleet rows (by twin id), keeping the twins whose attributes (:func:`twin_attributes`) match
    ``wanted``; a filter reads batches of at least 500 rows, so it scans the fleet in few queries.

    >>> page = FleetPage(2, {"type": "pump"}, None, lambda t: "pump" if t.startswith("p") else None)
    >>> page.take([{"twin_id": "f1"}, {"twin_id": "p1"}, {"twin_id": "p2"}, {"twin_id": "p3"}])
    >>> [row["twin_id"] for row, _ in page.items], page.wants_more, page.next
    (['p1', 'p2'], False, 'p2')
    """

    def __init__(
        self,
        limit: int,
        wanted: dict[str, str],
        registry: TwinRegistry | None,
        type_of: Callable[[str], str | None],
        after: str = "",
    ) -> None:
        self.limit, self.wanted, self.registry, self.type_of = limit, wanted, registry, type_of
        self.after = after  # the last twin id read: where the next batch starts
        self.batch = max(limit, 500) if wanted else limit
        self.items: list[tuple[dict[str, Any], Attrs]] = []
        self.more = True  # twins after ``after`` may remain

    @property
    def wants_more(self) -> bool:
        return len(self.items) < self.limit and self.more

    @property
    def next(self) -> str | None:
        """The cursor of the next page (None: this is the last)."""
        return self.items[-1][0]["twin_id"] if len(self.items) == self.limit and self.more else None

    def take(self, rows: list[dict[str, Any]]) -> None:
        """Add a batch of fleet rows (at most :attr:`batch`, after :attr:`after`)."""
        self.more = len(rows) == self.batch
        for i, row in enumerate(rows):
            self.after = row["twin_id"]
            attrs = twin_attributes(row["twin_id"], self.registry, self.type_of)
            if all(str(attrs.get(k)) == v for k, v in self.wanted.items()):
                self.items.append((row, attrs))
                if len(self.items) == self.limit:
                    self.more = self.more or i < len(rows) - 1  # twins left in this batch
                    return
