"""Mosquitto in the secure profile: TLS only with client certificates, no anonymous access, a
password file hashed by ``mosquitto_passwd -U`` and topic ACLs (a device publishes its own
telemetry only); :func:`mqtt_connack` probes a login.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from twinflow.settings import MqttSettings, Settings
from twinflow.stack import certs
from twinflow.stack.mosquitto import Mosquitto
from twinflow.stack.process import StackError, port_open
from twinflow.stack.secure.material import MQTT_USERS, Material

MOSQUITTO_LISTENER = """\
per_listener_settings false
listener {port} 127.0.0.1
cafile {ca}
certfile {cert}
keyfile {key}
require_certificate true
tls_version tlsv1.2
allow_anonymous false
password_file {passwd}
acl_file {acl}"""

MOSQUITTO_ACL = """\
# written by `twinflow stack up --secure`: deny by default
user twinflow-bridge
topic read twinflow/+/telemetry

user twinflow-health
topic read $SYS/broker/uptime

# every other user is a device named after its twin: it may publish its own telemetry only
pattern write twinflow/%u/telemetry
"""


class SecureMosquitto(Mosquitto):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.material = Material(settings.stack.dir)
        self.passwd = self.dir / "passwd"
        self.acl = self.dir / "acl"

    def prepare(self) -> None:
        m = self.material
        tls = self.dir / "tls"
        tls.mkdir(exist_ok=True)
        for name in ("ca.pem", "server.pem", "server.key"):
            shutil.copy2(m.file(name), tls / name)
        if not self.passwd.exists():
            certs.write_secret(self.passwd, b"")
            for user in MQTT_USERS:
                self.add_user(user, m.password("mqtt", user), reload=False)
        self.acl.write_text(MOSQUITTO_ACL)

    def listener_conf(self) -> str:
        tls = self.dir / "tls"
        return MOSQUITTO_LISTENER.format(
            port=self.port,
            ca=tls / "ca.pem",
            cert=tls / "server.pem",
            key=tls / "server.key",
            passwd=self.passwd,
            acl=self.acl,
        )

    def add_user(self, user: str, password: str, *, reload: bool = True) -> None:
        """Add (or replace) an MQTT account; the password is hashed by ``mosquitto_passwd -U``
        from a 0600 file, so it never appears on a command line."""
        if ":" in user or not user:
            raise StackError(f"invalid MQTT user name {user!r}")
        with tempfile.TemporaryDirectory(dir=self.dir) as tmp:
            plain = Path(tmp) / "entry"
            certs.write_secret(plain, f"{user}:{password}\n")
            res = subprocess.run(["mosquitto_passwd", "-U", str(plain)], capture_output=True, text=True)
            if res.returncode != 0:
                raise StackError(f"mosquitto_passwd -U failed: {res.stderr.strip()[:300]}")
            kept = [ln for ln in self.passwd.read_text().splitlines() if ln and not ln.startswith(f"{user}:")]
            certs.write_secret(self.passwd, "\n".join([*kept, plain.read_text().strip()]) + "\n")
        pid = self.pid()
        if reload and pid:
            os.kill(pid, signal.SIGHUP)  # mosquitto re-reads the password and ACL files

    def healthy(self) -> bool:
        if not port_open(self.port):
            return False
        ms = self.material.mqtt_settings(self.settings.mqtt, "twinflow-health")
        return mqtt_connack(ms, client_id="twinflow-health") == 0


def mqtt_connack(ms: MqttSettings, client_id: str, timeout: float = 5.0) -> int | None:
    """Connect with ``ms`` and return the CONNACK reason code (0 = accepted), None on no answer.

    TLS failures (untrusted certificates) also give None.
    """
    import threading

    import paho.mqtt.client as mqtt

    from connectors.mqtt.security import configure_client

    got: list[int] = []
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)

    def on_connect(_c, _u, _f, reason_code, _p) -> None:
        got.append(reason_code.value)
        done.set()

    client.on_connect = on_connect
    try:
        configure_client(client, ms)
        client.connect(ms.host, ms.port, keepalive=5)
        client.loop_start()
        done.wait(timeout)
    except (OSError, ValueError):
        return None
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0] if got else None
