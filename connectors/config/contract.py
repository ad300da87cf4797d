"""What the connectors read from the configuration, as a structural type.

Connectors sit below the flows and the CLI, so they never import the composed settings
(:class:`twinflow.settings.Settings`); they name the sections they read here, and any object with
these attributes will do (the composed settings, or a test's). Sections of the connectors' own
layer are their models; sections of the layers above (``[twin]``, ``[security]``, ``[alerts]``,
``[flow]``) are narrowed to the fields the connectors read.
"""

from __future__ import annotations

from typing import Protocol

from connectors.bridges.settings import BridgeSettings
from connectors.kafka.settings import KafkaSettings, Topics
from connectors.mqtt.settings import MqttSettings


class TwinTopicNames(Protocol):
    """The ``[twin]`` topics (flows/twin_settings.py)."""

    desired_topic: str
    commands_topic: str
    acks_topic: str
    state_topic: str
    desync_topic: str
    outcomes_topic: str
    late_topic: str
    partitions: int


class SecurityLimits(Protocol):
    """The ``[security]`` fields connectors apply (flows/settings.py)."""

    desired_rejected_topic: str
    max_dead_letter_bytes: int
    max_mqtt_payload_bytes: int


class AlertTopicNames(Protocol):
    """The ``[alerts]`` topics (flows/settings.py)."""

    topic: str
    actions_topic: str
    anomalies_topic: str
    failures_topic: str
    forecasts_topic: str
    status_topic: str
    suppression_topic: str
    partitions: int


class MessageLimits(Protocol):
    """The ``[flow]`` fields connectors apply (flows/settings.py)."""

    batch_size: int
    poll_interval_ms: float
    max_message_bytes: int


class ConnectorSettings(Protocol):
    """The sections connectors read; :class:`twinflow.settings.Settings` has them all."""

    @property
    def kafka(self) -> KafkaSettings: ...
    @property
    def topics(self) -> Topics: ...
    @property
    def mqtt(self) -> MqttSettings: ...
    @property
    def bridge(self) -> BridgeSettings: ...
    @property
    def twin(self) -> TwinTopicNames: ...
    @property
    def security(self) -> SecurityLimits: ...
    @property
    def alerts(self) -> AlertTopicNames: ...
    @property
    def flow(self) -> MessageLimits: ...
