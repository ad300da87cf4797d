"""Mosquitto MQTT broker from Debian's packages, listening on 127.0.0.1."""

from __future__ import annotations

import shutil

from twinflow.stack.base import Service
from twinflow.stack.process import apt_install, is_root, port_open, require_port_free, start_daemon

CONF = """\
# written by `twinflow stack up`
{listener}
persistence true
persistence_location {dir}/
max_queued_messages 100000
max_inflight_messages 1000
message_size_limit 1048576
log_dest stdout
log_type error
log_type warning
log_type notice
{user}
"""


class Mosquitto(Service):
    name = "mosquitto"

    @property
    def port(self) -> int:
        return self.settings.stack.mosquitto_port

    def install(self) -> None:
        if shutil.which("mosquitto") is None and not _sbin("mosquitto"):
            apt_install(["mosquitto", "mosquitto-clients"], "Mosquitto is not installed")
        elif shutil.which("mosquitto_pub") is None:
            apt_install(["mosquitto-clients"], "mosquitto_pub is not installed")

    def listener_conf(self) -> str:
        """The listener and its access rules (the secure profile overrides this)."""
        return f"listener {self.port} 127.0.0.1\nallow_anonymous true"

    def prepare(self) -> None:
        """Files the configuration refers to (the secure profile writes certificates, users, ACLs)."""

    def start(self) -> None:
        require_port_free(self.port, "mosquitto", self.port_setting)
        self.prepare()
        conf = self.dir / "mosquitto.conf"
        # As root, mosquitto would drop to the `mosquitto` user; keep the stack's owner instead.
        user = "user root" if is_root() else ""
        conf.write_text(CONF.format(listener=self.listener_conf(), dir=self.dir, user=user))
        start_daemon(
            [shutil.which("mosquitto") or _sbin("mosquitto"), "-c", str(conf)],
            log=self.log,
            pidfile=self.pidfile,
        )

    def healthy(self) -> bool:
        if not port_open(self.port):
            return False
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="twinflow-health")
        try:
            client.connect("127.0.0.1", self.port, keepalive=5)
            client.disconnect()
            return True
        except OSError:
            return False


def _sbin(name: str) -> str:
    path = f"/usr/sbin/{name}"
    return path if shutil.os.path.exists(path) else ""
