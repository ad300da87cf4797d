"""One place that builds paho-mqtt clients: persistent session, credentials, TLS."""

from __future__ import annotations

import ssl
from pathlib import Path

import paho.mqtt.client as mqtt


def make_client(
    client_id: str,
    *,
    clean_session: bool = False,
    username: str | None = None,
    password: str | None = None,
    tls: bool = False,
    ca_file: Path | None = None,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    tls_insecure: bool = False,
) -> mqtt.Client:
    """A paho client (MQTT 3.1.1); ``clean_session=False`` keeps QoS 1/2 messages while away."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
    )
    if username:
        client.username_pw_set(username, password)
    if tls:
        client.tls_set(
            ca_certs=str(ca_file) if ca_file else None,
            certfile=str(certfile) if certfile else None,
            keyfile=str(keyfile) if keyfile else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(tls_insecure)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    return client
