"""Sparkplug B over MQTT: the payload codec (protobuf, compiled from sparkplug_b.proto by `make setup`);
needs the ``sparkplug`` extra."""

from connectors.extras import require

require("sparkplug")
