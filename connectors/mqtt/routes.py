"""Which twins and parameters an MQTT message is for: the routes of one broker's mapped assets.

A concrete topic routes to the twins whose parameters it carries (:class:`TwinRoute`). A topic
template (``lines/{line}/{machine}/state``) builds the twin id from the topic's levels; what it
finds is cached per topic. Sparkplug B assets are routed by group/node/device ids, device acks by
their topic patterns. :class:`TwinAssets` goes the other way, from a twin id to its asset (commands).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from connectors.bridges.mapping.schema import MqttAsset
from connectors.bridges.mapping.templates import subscription_of, topic_regex, twin_pattern
from connectors.mqtt.payload import Part, split_path
from operators.records.envelope import TWIN_ID_PATTERN, Reason, Rejected

SPARKPLUG_NS = "spBv1.0"
TWIN_ID = re.compile(TWIN_ID_PATTERN)
_MAX_CACHED_TOPICS = 100_000


class ParamRoute(NamedTuple):
    name: str
    parts: tuple[Part, ...] | None  # None: plain payload
    text: bool


class TwinRoute(NamedTuple):
    """The parameters of one twin on one concrete topic."""

    twin_id: str
    asset: MqttAsset
    params: tuple[ParamRoute, ...]
    ts_parts: tuple[Part, ...] | None
    q_parts: tuple[Part, ...] | None
    ts_format: str


class TemplateRoute(NamedTuple):
    regex: re.Pattern[str]
    asset: MqttAsset
    params: tuple[ParamRoute, ...]


@dataclass
class TopicRoutes:
    """The subscriptions of one broker's assets and the routes of the topics they receive."""

    ts_format: str  # the connection's default timestamp format
    subscriptions: list[str] = field(default_factory=list)
    exact: dict[str, list[TwinRoute]] = field(default_factory=dict)
    templates: list[TemplateRoute] = field(default_factory=list)
    sparkplug: list[MqttAsset] = field(default_factory=list)
    ack_topics: list[re.Pattern[str]] = field(default_factory=list)

    @classmethod
    def plan(cls, assets: list[MqttAsset], ts_format: str) -> TopicRoutes:
        routes = cls(ts_format)
        subs: list[str] = []
        for a in assets:
            if a.sparkplug is not None:
                routes.sparkplug.append(a)
                sp = a.sparkplug
                subs.append(f"{SPARKPLUG_NS}/{sp.group}/+/{sp.node}/#")
                continue
            by_topic: dict[str, list[ParamRoute]] = {}
            for name, p in a.params.items():
                parts = split_path(p.path) if p.path else None
                by_topic.setdefault(a.topic_of(name), []).append(ParamRoute(name, parts, p.type == "text"))
            for topic, params in by_topic.items():
                subs.append(subscription_of(topic))
                if a.is_template:
                    routes.templates.append(TemplateRoute(topic_regex(topic), a, tuple(params)))
                else:
                    routes.exact.setdefault(topic, []).append(routes._twin(a.twin_id, a, params))
            if a.ack_topic:
                subs.append(subscription_of(a.ack_topic))
                routes.ack_topics.append(topic_regex(a.ack_topic))
        routes.subscriptions = list(dict.fromkeys(subs))
        return routes

    def _twin(self, twin_id: str, a: MqttAsset, params: list[ParamRoute] | tuple[ParamRoute, ...]) -> TwinRoute:
        return TwinRoute(
            twin_id,
            a,
            tuple(params),
            split_path(a.ts_path) if a.ts_path else None,
            split_path(a.quality_path) if a.quality_path else None,
            a.ts_format or self.ts_format,
        )

    def twins_of(self, topic: str) -> list[TwinRoute] | None:
        """The twins a message on ``topic`` is for (None: no route); :class:`Rejected` when a
        template builds an invalid twin id from the topic (not cached: each such message is rejected)."""
        routes = self.exact.get(topic)
        if routes is not None or not self.templates:
            return routes
        found: list[TwinRoute] = []
        for t in self.templates:
            m = t.regex.match(topic)
            if m is None:
                continue
            twin = t.asset.twin_id.format(**m.groupdict())
            if not TWIN_ID.match(twin):
                raise Rejected(
                    Reason.SCHEMA, f"topic {topic!r} gives twin_id {twin!r}, not a valid twin id ({TWIN_ID_PATTERN})"
                )
            found.append(self._twin(twin, t.asset, t.params))
        if len(self.exact) < _MAX_CACHED_TOPICS:
            self.exact[topic] = found
        return found

    def is_ack(self, topic: str) -> bool:
        return bool(self.ack_topics) and any(r.match(topic) for r in self.ack_topics)


def sparkplug_twins(
    assets: list[MqttAsset], group: str, node: str, device: str | None
) -> Iterator[tuple[str, MqttAsset]]:
    """(twin id, asset) of the Sparkplug assets that a group/node/device's metrics are for."""
    for a in assets:
        sp = a.sparkplug
        assert sp is not None
        if sp.group not in ("+", group) or sp.node not in ("+", node) or (sp.device or None) not in ("+", device):
            continue
        if sp.device is None and device is not None:
            continue
        twin = a.twin_id.format(group=group, node=node, device=device or "")
        if TWIN_ID.match(twin):
            yield twin, a


class TwinAssets:
    """The asset of a twin id: its own, or the template whose pattern builds the id (with the values
    of the template's placeholders)."""

    def __init__(self, assets: list[MqttAsset]) -> None:
        self._exact = {a.twin_id: a for a in assets if not a.is_template}
        self._templates = [(twin_pattern(a.twin_id), a) for a in assets if a.is_template]

    def of(self, twin_id: str) -> tuple[MqttAsset, dict[str, str]] | None:
        a = self._exact.get(twin_id)
        if a is not None:
            return a, {}
        for pattern, a in self._templates:
            m = pattern.fullmatch(twin_id)
            if m is not None:
                return a, m.groupdict()
        return None
