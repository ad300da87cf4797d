"""TLS and username/password for paho-mqtt clients, from :class:`~connectors.mqtt.settings.MqttSettings`.

Secrets are passed to paho only; nothing here logs them.
"""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt

from connectors.mqtt.settings import MqttSettings


def tls_context(ms: MqttSettings) -> ssl.SSLContext:
    """A client TLS context trusting ``ca_file`` (or the system CAs), with a client certificate if set."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ms.ca_file) if ms.ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ms.cert_file is not None:
        ctx.load_cert_chain(str(ms.cert_file), str(ms.key_file) if ms.key_file else None)
    return ctx


def configure_client(client: mqtt.Client, ms: MqttSettings) -> None:
    """Apply the settings' credentials and TLS to a paho client (no-op for a plain local broker)."""
    if ms.username is not None:
        client.username_pw_set(ms.username, ms.password.get_secret_value() if ms.password else None)
    if ms.tls or ms.ca_file is not None:
        client.tls_set_context(tls_context(ms))
