"""Reconciliation policy: which side wins per parameter, tolerances, hold times, retries.

Configured per twin type and overridable per twin, in the ``[twin.policy]`` section of the
settings TOML (see docs/reconciliation.md). Rules are layered, later layers override earlier
ones field by field::

    defaults → types.<T> → types.<T>.parameters.<p> → twins.<id> → twins.<id>.parameters.<p>

A twin's type is ``twins.<id>.type`` or else the first type whose ``match`` glob fits the twin_id.

Connectivity timeouts (``offline_after_s``, ``offline_alert_after_s``) are twin-wide: their bottom
layer is the fleet-wide ``[twin]`` value, overridden by ``types.<T>`` and then ``twins.<id>``.

>>> p = TwinPolicy.model_validate({
...     "types": {"pump": {"match": ["pump-*"], "parameters": {"speed": {
...         "strategy": "digital_wins", "tolerance": 5, "critical": True}}}},
...     "twins": {"pump-007": {"parameters": {"speed": {"strategy": "physical_wins"}}}}})
>>> [p.rules_for(t).param("speed").strategy.value for t in ("pump-001", "pump-007")]
['digital_wins', 'physical_wins']
>>> p.rules_for("pump-007").param("speed").tolerance
5.0
>>> q = TwinPolicy.model_validate({"types": {"plc": {"match": ["plc-*"], "offline_after_s": 10}}})
>>> fleet = ConnectivityTimeouts(offline_after_s=60)  # the [twin] section's values
>>> [(r.offline_after_s, r.offline_after_key) for r in (q.rules_for("plc-1", fleet), q.rules_for("x", fleet))]
[(10.0, 'twin.policy.types.plc.offline_after_s'), (60.0, 'twin.offline_after_s')]
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from operators.strict import StrictModel


class Strategy(StrEnum):
    """Who wins when reported and desired disagree (per parameter)."""

    PHYSICAL_WINS = "physical_wins"  # desired follows reported
    DIGITAL_WINS = "digital_wins"  # a command drives the device to desired
    MERGE = "merge"  # field by field, the newer source timestamp wins (tie: reported)


class ParamOverrides(StrictModel):
    """Per-parameter rules; unset fields inherit from the layer below."""

    strategy: Strategy | None = None  # which side wins: physical_wins (the device), digital_wins, merge
    tolerance: float | None = Field(None, ge=0, description="|reported − desired| allowed (absolute)")
    clear_tolerance: float | None = Field(None, ge=0, description="band to leave a conflict; default tolerance / 2")
    hold_time_s: float | None = Field(None, ge=0, description="seconds a condition must hold to switch")
    critical: bool | None = Field(None, description="synchronized only after the device acknowledged")
    deadband: float | None = Field(None, ge=0, description="reported changes ≤ this make no new version")
    deadband_pct: float | None = Field(
        None, ge=0, le=100, description="measurements: changes ≤ this % of the value make no new version"
    )
    ack_timeout_s: float | None = Field(None, gt=0)  # a command without an ack by then is retried
    max_attempts: int | None = Field(None, ge=1, description="command attempts per desired value")
    backoff_base_s: float | None = Field(None, ge=0)  # retries wait base × 2^(attempt−1), at most backoff_max_s
    backoff_max_s: float | None = Field(None, ge=0)  # the longest wait between command retries


class TwinOverrides(ParamOverrides):
    """A layer for a whole twin (type or instance): parameter defaults plus twin-wide rules."""

    max_desync_time_s: float | None = Field(None, gt=0, description="escalate a desync after this")
    simulation_sources: list[str] | None = Field(
        None, description="envelope sources whose values are what-if (never reported)"
    )
    parameters: dict[str, ParamOverrides] = Field(default_factory=dict)  # per parameter name


CONNECTIVITY_DEFAULTS: dict[str, float] = {"offline_after_s": 0.0, "offline_alert_after_s": 60.0}
"""The ``[twin]`` section's fleet-wide connectivity timeouts when not set (0: never offline by silence)."""


class ConnectivityTimeouts(StrictModel):
    """Connectivity timeouts of a twin; unset fields inherit from the layer below (the fleet-wide ``[twin]``)."""

    offline_after_s: float | None = Field(
        None, ge=0, description="no reading for this long takes the twin offline; 0: never by silence"
    )
    offline_alert_after_s: float | None = Field(
        None, ge=0, description="offline this long sends a device_offline alert"
    )


_CONNECTIVITY_FIELDS = tuple(ConnectivityTimeouts.model_fields)


class LayerOverrides(ConnectivityTimeouts, TwinOverrides):
    """A type or twin layer: a :class:`TwinOverrides` that may also set the connectivity timeouts."""


class TypeRules(LayerOverrides):
    match: list[str] = Field(default_factory=list, description="twin_id globs of this type")


class InstanceRules(LayerOverrides):
    type: str | None = None  # the asset type whose rules ([twin.policy.types.<type>]) this twin takes


BUILTIN_DEFAULTS: dict[str, Any] = {
    "strategy": Strategy.PHYSICAL_WINS,  # never drive a machine unless configured to
    "tolerance": 0.0,
    "hold_time_s": 5.0,
    "critical": False,
    "deadband": 0.0,
    # Measurements (no desired value): 1 % of the value, so analog noise does not version every
    # reading; discrete values (0/1, status codes < 100) always change by more. Setpoints: exact.
    "deadband_pct": 1.0,
    "ack_timeout_s": 10.0,
    "max_attempts": 3,
    "backoff_base_s": 1.0,
    "backoff_max_s": 30.0,
    "max_desync_time_s": 300.0,
    "simulation_sources": ["whatif"],
}


class Defaults(TwinOverrides):
    """The bottom layer; unset fields take :data:`BUILTIN_DEFAULTS` (same constraints as above).

    The connectivity timeouts have their fleet-wide value in ``[twin]``, not here (one place)."""

    @model_validator(mode="before")
    @classmethod
    def _fill(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _CONNECTIVITY_FIELDS:
                if key in data:
                    raise ValueError(
                        f"`{key}` is fleet-wide in [twin] ({key} = ...), not in [twin.policy.defaults]; move it "
                        f"there, or set it per type ([twin.policy.types.<type>]) or per twin ([twin.policy.twins.<id>])"
                    )
            return {**BUILTIN_DEFAULTS, **{k: v for k, v in data.items() if v is not None}}
        return data


_PARAM_FIELDS = tuple(ParamOverrides.model_fields)


@dataclass(frozen=True, slots=True)
class ParamRules:
    """Resolved rules of one parameter of one twin."""

    strategy: Strategy
    tolerance: float
    clear_tolerance: float
    hold_time_s: float
    critical: bool
    deadband: float
    deadband_pct: float
    ack_timeout_s: float
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float

    def backoff_s(self, attempt: int) -> float:
        """Wait before attempt ``attempt + 1`` (exponential, capped)."""
        return min(self.backoff_base_s * 2 ** max(attempt - 1, 0), self.backoff_max_s)


@dataclass(slots=True)
class TwinRules:
    """Resolved rules of one twin; parameters resolve lazily and are cached.

    ``offline_after_key``: the setting ``offline_after_s`` came from (``twin.offline_after_s``, or
    ``twin.policy.types.<T>.offline_after_s`` / ``twin.policy.twins.<id>.offline_after_s``)."""

    twin_type: str | None
    max_desync_time_s: float
    simulation_sources: frozenset[str]
    _layers: tuple[tuple[str, ParamOverrides], ...]
    offline_after_s: float = CONNECTIVITY_DEFAULTS["offline_after_s"]
    offline_alert_after_s: float = CONNECTIVITY_DEFAULTS["offline_alert_after_s"]
    offline_after_key: str = "twin.offline_after_s"
    _cache: dict[str, ParamRules] = field(default_factory=dict)

    def param(self, name: str) -> ParamRules:
        rules = self._cache.get(name)
        if rules is None:
            rules = self._cache[name] = _resolve_param(self._layers, name)
        return rules

    def declares(self, name: str) -> bool:
        """Whether the policy names this parameter for this twin (any layer's ``parameters``)."""
        return any(isinstance(layer, TwinOverrides) and name in layer.parameters for _w, layer in self._layers)


def _resolve_param(layers: tuple[tuple[str, ParamOverrides], ...], name: str) -> ParamRules:
    merged: dict[str, Any] = {}
    for _where, layer in _param_layers(layers, name):
        for f in _explicit(layer) & set(_PARAM_FIELDS):
            value = getattr(layer, f)
            if value is not None:
                merged[f] = value
    if merged.get("clear_tolerance") is None:
        merged["clear_tolerance"] = merged["tolerance"] / 2
    return ParamRules(**{f: merged[f] for f in _PARAM_FIELDS})


def _explicit(layer: ParamOverrides) -> set[str]:
    """Fields a layer sets; the bottom layer (defaults) sets all of them."""
    return set(type(layer).model_fields) if isinstance(layer, Defaults) else set(layer.model_fields_set)


def _param_layers(layers: tuple[tuple[str, ParamOverrides], ...], name: str):
    for where, layer in layers:
        yield where, layer
        if isinstance(layer, TwinOverrides) and name in layer.parameters:
            yield f"{where}.parameters.{name}", layer.parameters[name]


class TwinPolicy(StrictModel):
    """The ``[twin.policy]`` section."""

    defaults: Defaults = Field(default_factory=Defaults)
    types: dict[str, TypeRules] = Field(default_factory=dict)  # per twin type (match: twin_id globs)
    twins: dict[str, InstanceRules] = Field(default_factory=dict)  # per twin_id (type: one of types)

    @model_validator(mode="after")
    def _check(self) -> TwinPolicy:
        for twin_id, inst in self.twins.items():
            if inst.type is not None and inst.type not in self.types:
                known = ", ".join(sorted(self.types)) or "none defined"
                raise ValueError(
                    f"twins.{twin_id}.type = {inst.type!r} is not a defined type (known: {known}); "
                    f"add [twin.policy.types.{inst.type}] or fix the name"
                )
        for where, layers, params in self._all_layer_stacks():
            for name in params:
                rules = _resolve_param(layers, name)
                if rules.clear_tolerance > rules.tolerance:
                    raise ValueError(
                        f"{where}.parameters.{name}: clear_tolerance {rules.clear_tolerance} must be ≤ "
                        f"tolerance {rules.tolerance} (clearing a conflict needs the tighter band)"
                    )
                if rules.backoff_max_s < rules.backoff_base_s:
                    raise ValueError(f"{where}.parameters.{name}: backoff_max_s must be ≥ backoff_base_s")
        return self

    def _all_layer_stacks(self):
        yield "defaults", (("defaults", self.defaults),), {"*"} | set(self.defaults.parameters)
        for tname, t in self.types.items():
            layers = (("defaults", self.defaults), (f"types.{tname}", t))
            yield f"types.{tname}", layers, {"*"} | set(t.parameters) | set(self.defaults.parameters)
        for twin_id, inst in self.twins.items():
            t = self.types.get(inst.type) if inst.type else None
            layers = self._layers(twin_id, inst.type if t else None)
            params = {"*"} | set(inst.parameters) | set(t.parameters if t else ())
            yield f"twins.{twin_id}", layers, params

    def type_of(self, twin_id: str) -> str | None:
        inst = self.twins.get(twin_id)
        if inst is not None and inst.type is not None:
            return inst.type
        for tname, t in self.types.items():
            if any(fnmatch.fnmatchcase(twin_id, pattern) for pattern in t.match):
                return tname
        return None

    def _layers(self, twin_id: str, twin_type: str | None) -> tuple[tuple[str, ParamOverrides], ...]:
        layers: list[tuple[str, ParamOverrides]] = [("defaults", self.defaults)]
        if twin_type is not None:
            layers.append((f"types.{twin_type}", self.types[twin_type]))
        if twin_id in self.twins:
            layers.append((f"twins.{twin_id}", self.twins[twin_id]))
        return tuple(layers)

    def rules_for(self, twin_id: str, fleet: ConnectivityTimeouts | None = None) -> TwinRules:
        """Resolve the rules of one twin; ``fleet``: the ``[twin]`` section's connectivity timeouts
        (unset: :data:`CONNECTIVITY_DEFAULTS`), the bottom layer of the twin's own."""
        twin_type = self.type_of(twin_id)
        layers = self._layers(twin_id, twin_type)
        twin_fields: dict[str, Any] = {**CONNECTIVITY_DEFAULTS, "offline_after_key": "twin.offline_after_s"}
        if fleet is not None:
            twin_fields.update(fleet.model_dump(exclude_none=True))
        for where, layer in layers:
            assert isinstance(layer, TwinOverrides)
            for f in ("max_desync_time_s", "simulation_sources", *_CONNECTIVITY_FIELDS):
                if f in _explicit(layer) and getattr(layer, f, None) is not None:
                    twin_fields[f] = getattr(layer, f)
                    if f == "offline_after_s":
                        twin_fields["offline_after_key"] = f"twin.policy.{where}.offline_after_s"
        return TwinRules(
            twin_type=twin_type,
            max_desync_time_s=twin_fields["max_desync_time_s"],
            simulation_sources=frozenset(twin_fields["simulation_sources"]),
            _layers=layers,
            offline_after_s=twin_fields["offline_after_s"],
            offline_alert_after_s=twin_fields["offline_alert_after_s"],
            offline_after_key=twin_fields["offline_after_key"],
        )
