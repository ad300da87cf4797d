"""Attribute-based authorisation of desired-state changes and alert actions (plain Python, no I/O).

A desired update ``{twin_id, values, mode}`` is allowed only when **every** parameter it
sets is allowed, with its value, by at least one rule whose subject and twin conditions
match (and its ``mode``, if any, is in such a rule's ``modes``). Everything else is denied, with a reason. The policy
is a TOML file (``security.policy_file``); see docs/security.md::

    [[rule]]
    name = "operators tune pumps of their own site"
    subject = { roles = "operator" }        # subject attribute ∩ listed values ≠ ∅
    twin = { type = ["pump", "fan"] }       # same for the twin's attributes
    same = ["site"]                         # subject.site == twin.site
    [rule.parameters]
    rpm_setpoint = { min = 0, max = 3000 }
    mode = { values = ["auto", "manual"] }
    "pid.*" = { type = "number" }           # glob on parameter names
    modes = ["maintenance", "normal"]       # operator modes this rule lets the subject set
    alerts = ["ack", "shelve"]              # alert actions on the twin's alerts ("*": every one)
    models = ["rebaseline"]                 # model control of the twin (reset, rebaseline, failure, repair)

>>> p = Policy.from_dict({"rule": [{"name": "ops", "subject": {"roles": "operator"},
...     "twin": {"type": "pump"}, "parameters": {"rpm_setpoint": {"min": 0, "max": 3000}}}]})
>>> ops, pump = {"id": "ann", "roles": ["operator"]}, {"type": "pump"}
>>> p.authorize({"twin_id": "p1", "values": {"rpm_setpoint": 1200}}, ops, pump)
Decision(allowed=True, reason='allowed', detail='rpm_setpoint by rule ops', rules=('ops',))
>>> p.authorize({"twin_id": "p1", "values": {"rpm_setpoint": 5000}}, ops, pump).reason
'out_of_range'
>>> p.authorize({"twin_id": "p1", "values": {"rpm_setpoint": 5}}, {"roles": ["guest"]}, pump).reason
'no_matching_rule'
>>> ParameterRule(type="integer").check("stage", 3.0), ParameterRule(type="integer").check("stage", 3.5)[0]
(None, 'bad_type')

Alert actions and model control (:meth:`Policy.authorize_action`, ``"alerts"`` or ``"models"``): only rules
that grant actions of that kind count; a rule must also match the twin, and for every twin at once
(redelivering every failed delivery) have no twin condition:

>>> a = Policy.from_dict({"rule": [{"name": "m", "subject": {"roles": "maintenance"},
...     "twin": {"type": "pump"}, "alerts": ["ack", "shelve"]}]})
>>> a.authorize_action("alerts", "shelve", {"roles": "maintenance"}, pump)
Decision(allowed=True, reason='allowed', detail='shelve by rule m', rules=('m',))
>>> a.authorize_action("alerts", "out_of_service", {"roles": "maintenance"}, pump).reason
'action_not_allowed'
>>> a.authorize_action("alerts", "ack", ops, pump).reason, p.authorize_action("alerts", "ack", ops, pump).reason
('no_matching_rule', 'no_matching_rule')
>>> a.authorize_action("alerts", "ack", {"roles": "maintenance"}, EVERY_TWIN).reason  # the rule names a twin type
'no_matching_rule'
>>> a.authorize_action("models", "rebaseline", {"roles": "maintenance"}, pump).detail  # alerts only
"no rule grants 'subject' model control on this twin's models"
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import Field, model_validator

from operators.strict import StrictModel

Scalar = str | int | float | bool
Condition = dict[str, Scalar | list[Scalar]]


class DenyReason:
    """The machine-readable reasons of a denial."""

    NO_POLICY = "no_policy"
    UNKNOWN_TWIN = "unknown_twin"
    EMPTY_UPDATE = "empty_update"
    NO_MATCHING_RULE = "no_matching_rule"
    PARAMETER_NOT_ALLOWED = "parameter_not_allowed"
    BAD_TYPE = "bad_type"
    OUT_OF_RANGE = "out_of_range"
    VALUE_NOT_ALLOWED = "value_not_allowed"
    MODE_NOT_ALLOWED = "mode_not_allowed"
    ACTION_NOT_ALLOWED = "action_not_allowed"  # an alert action or model control no matching rule grants
    UNKNOWN_SUBJECT = "unknown_subject"  # not in the subjects file (actions; the gate's is request_auth's)
    NO_SUBJECTS = "no_subjects"


# People's actions on alerts a rule may grant (``alerts = [...]``): twinflow.alarms.actions and the webhook
# outbox's redelivery; "*" grants every one.
ALERT_ACTIONS = ("ack", "resolve", "shelve", "unshelve", "out_of_service", "in_service", "redeliver")
AlertActionName = Literal["ack", "resolve", "shelve", "unshelve", "out_of_service", "in_service", "redeliver", "*"]
# Model control a rule may grant (``models = [...]``: ``twinflow model reset|rebaseline|event --kind
# failure|repair``; a reset or a repair forgets what the twin's models learned, a rebaseline their healthy
# reference, a failure labels the twin's history): "*" grants every one.
MODEL_ACTIONS = ("reset", "rebaseline", "failure", "repair")
ModelActionName = Literal["reset", "rebaseline", "failure", "repair", "*"]
# The kinds of action a rule grants besides setpoints and modes: the rule's field and what it is called.
ACTION_KINDS = {"alerts": "alert actions", "models": "model control"}
# The twin of "every failed delivery" (not bound to one twin): only rules without twin conditions match it.
EVERY_TWIN: Mapping[str, Any] = {"id": "*"}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    detail: str
    rules: tuple[str, ...] = ()

    @property
    def decision(self) -> str:
        return "allow" if self.allowed else "deny"


class ParameterRule(StrictModel):
    type: Literal["number", "integer", "string", "bool", "any"] = "any"
    min: float | None = None
    max: float | None = None
    values: list[Scalar] | None = None
    max_length: int = Field(256, ge=0)

    @model_validator(mode="after")
    def _range(self) -> ParameterRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self

    def check(self, name: str, value: Any) -> tuple[str, str] | None:
        """None when ``value`` is allowed, else (reason, detail)."""
        if not isinstance(value, str | int | float | bool) or value is None:
            return DenyReason.BAD_TYPE, f"{name}: only JSON scalars may be set, got {type(value).__name__}"
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if is_number and not math.isfinite(value):
            return DenyReason.BAD_TYPE, f"{name}: {value} is not a finite number"
        expected = {
            "number": is_number,
            # Requests carry numbers as JSON numbers (decoded as floats): 3 and 3.0 are integers, 3.5 is not.
            "integer": is_number and float(value).is_integer(),
            "string": isinstance(value, str),
            "bool": isinstance(value, bool),
            "any": True,
        }[self.type]
        if not expected:
            return DenyReason.BAD_TYPE, f"{name}: expected {self.type}, got {type(value).__name__}"
        if isinstance(value, str) and len(value) > self.max_length:
            return DenyReason.BAD_TYPE, f"{name}: string longer than {self.max_length}"
        if self.values is not None and not any(_same(value, v) for v in self.values):
            return DenyReason.VALUE_NOT_ALLOWED, f"{name}={value!r} is not one of {self.values}"
        if self.min is not None or self.max is not None:
            if not is_number:
                return DenyReason.BAD_TYPE, f"{name}: a range applies, so it must be a number"
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
                return DenyReason.OUT_OF_RANGE, f"{name}={value} is outside [{self.min}, {self.max}]"
        return None


class Rule(StrictModel):
    name: str = Field(min_length=1)
    subject: Condition = Field(default_factory=dict)
    twin: Condition = Field(default_factory=dict)
    same: list[str] = Field(default_factory=list)
    parameters: dict[str, ParameterRule] = Field(default_factory=dict)
    modes: list[Literal["normal", "maintenance", "simulating"]] = Field(default_factory=list)
    alerts: list[AlertActionName] = Field(default_factory=list)
    models: list[ModelActionName] = Field(default_factory=list)

    @model_validator(mode="after")
    def _grants_something(self) -> Rule:
        if not self.parameters and not self.modes and not self.alerts and not self.models:
            raise ValueError(
                f"rule {self.name!r} grants nothing: add [rule.parameters], modes = [...], alerts = [...]"
                " or models = [...]"
            )
        return self

    def actions(self, kind: str) -> list[str]:
        """The actions of ``kind`` (a key of :data:`ACTION_KINDS`) this rule grants."""
        return getattr(self, kind)

    def grants(self, kind: str, action: str) -> bool:
        granted = self.actions(kind)
        return action in granted or "*" in granted

    def applies(self, subject: Mapping[str, Any], twin: Mapping[str, Any]) -> bool:
        if twin is EVERY_TWIN:
            return not self.twin and not self.same and _matches(self.subject, subject)
        return (
            _matches(self.subject, subject)
            and _matches(self.twin, twin)
            and all(a in subject and a in twin and subject[a] == twin[a] for a in self.same)
        )

    def parameter(self, name: str) -> ParameterRule | None:
        exact = self.parameters.get(name)
        if exact is not None:
            return exact
        return next((r for pat, r in self.parameters.items() if fnmatchcase(name, pat)), None)


class PolicyFile(StrictModel):
    rule: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> PolicyFile:
        names = [r.name for r in self.rule]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"rule names must be unique; repeated: {sorted(dup)}")
        return self


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same kind (True is not 1, "1" is not 1; 1 and 1.0 are both numbers)."""
    return isinstance(a, bool) == isinstance(b, bool) and isinstance(a, str) == isinstance(b, str) and a == b


def _as_set(value: Any) -> set:
    if isinstance(value, list | tuple | set | frozenset):
        return {v for v in value if isinstance(v, str | int | float | bool)}
    return {value}


def _matches(condition: Condition, attrs: Mapping[str, Any]) -> bool:
    """Every condition key present in ``attrs`` with an overlapping value (``"*"``: any value)."""
    for key, wanted in condition.items():
        if key not in attrs or attrs[key] is None:
            return False
        want = _as_set(wanted)
        if "*" not in want and not (want & _as_set(attrs[key])):
            return False
    return True


def _field(update: Any, name: str, default: Any = None) -> Any:
    if isinstance(update, Mapping):
        return update.get(name, default)
    return getattr(update, name, default)


class Policy:
    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        return cls(PolicyFile.model_validate(data).rule)

    def authorize(
        self, update: Any, subject_attrs: Mapping[str, Any], twin_attrs: Mapping[str, Any] | None
    ) -> Decision:
        """Allow or deny one desired update (a mapping or an object with ``values``)."""
        if twin_attrs is None:
            return Decision(False, DenyReason.UNKNOWN_TWIN, f"twin {_field(update, 'twin_id')!r} is unknown")
        values = _field(update, "values") or {}
        mode = _field(update, "mode")
        if not isinstance(values, Mapping) or (not values and mode is None):
            return Decision(False, DenyReason.EMPTY_UPDATE, "the update sets no values")
        rules = [r for r in self.rules if (r.parameters or r.modes) and r.applies(subject_attrs, twin_attrs)]
        if not rules:
            who = subject_attrs.get("id", "subject")
            return Decision(False, DenyReason.NO_MATCHING_RULE, f"no rule lets {who!r} change this twin")
        used: list[str] = []
        details: list[str] = []
        if mode is not None:
            by = next((r for r in rules if mode in r.modes), None)
            if by is None:
                detail = f"no matching rule lets the subject set mode {mode!r}"
                return Decision(False, DenyReason.MODE_NOT_ALLOWED, detail)
            used.append(by.name)
            details.append(f"mode {mode} by rule {by.name}")
        for name, value in values.items():
            refusal: tuple[str, str] | None = None
            for rule in rules:
                pr = rule.parameter(str(name))
                if pr is None:
                    continue
                problem = pr.check(str(name), value)
                if problem is None:
                    used.append(rule.name)
                    details.append(f"{name} by rule {rule.name}")
                    refusal = None
                    break
                refusal = refusal or problem
            else:
                refusal = refusal or (
                    DenyReason.PARAMETER_NOT_ALLOWED,
                    f"parameter {name!r} is not allowed by any matching rule",
                )
            if refusal is not None:
                return Decision(False, refusal[0], refusal[1])
        return Decision(True, "allowed", "; ".join(details), tuple(dict.fromkeys(used)))

    def grants_any(self, kind: str) -> bool:
        """Whether any rule grants an action of ``kind`` (without one, every such action is denied)."""
        return any(r.actions(kind) for r in self.rules)

    def authorize_action(
        self, kind: str, action: str, subject_attrs: Mapping[str, Any], twin_attrs: Mapping[str, Any]
    ) -> Decision:
        """Allow or deny one action of ``kind`` (``alerts``: :data:`ALERT_ACTIONS` on an alert of the twin
        with ``twin_attrs``, :data:`EVERY_TWIN` on every twin's; ``models``: :data:`MODEL_ACTIONS` on the
        twin's models), among the rules that grant actions of that kind."""
        rules = [r for r in self.rules if r.actions(kind) and r.applies(subject_attrs, twin_attrs)]
        who = subject_attrs.get("id", "subject")
        if not rules:
            which = f"every twin's {kind}" if twin_attrs is EVERY_TWIN else f"this twin's {kind}"
            detail = f"no rule grants {who!r} {ACTION_KINDS[kind]} on {which}"
            return Decision(False, DenyReason.NO_MATCHING_RULE, detail)
        by = next((r for r in rules if r.grants(kind, action)), None)
        if by is None:
            granted = ", ".join(sorted({a for r in rules for a in r.actions(kind)}))
            detail = f"no matching rule lets {who!r} {action} (they grant {granted})"
            return Decision(False, DenyReason.ACTION_NOT_ALLOWED, detail)
        return Decision(True, "allowed", f"{action} by rule {by.name}", (by.name,))


def authorize(
    update: Any,
    subject_attrs: Mapping[str, Any],
    twin_attrs: Mapping[str, Any] | None,
    policy: Policy | None = None,
) -> Decision:
    """Decide whether ``subject_attrs`` may apply ``update`` to the twin with ``twin_attrs``.

    Without a ``policy`` (none configured) every update is denied.
    ``twin_attrs=None`` means the twin is unknown (denied).
    """
    if policy is None:
        return Decision(False, DenyReason.NO_POLICY, "no policy file configured (security.policy_file)")
    return policy.authorize(update, subject_attrs, twin_attrs)
