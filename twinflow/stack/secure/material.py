"""The secure profile's material under ``<stack dir>/secure``: the CA, the server and client
certificates, one password file per account (0600), and the client settings and configuration
files made from them (one per client role of :data:`CLIENTS`), which name the secret *files*.
"""

from __future__ import annotations

import os
from pathlib import Path

from twinflow.settings import MqttSettings, Settings, read_secret_file
from twinflow.stack import certs

SECURE = "secure"
KAFKA_USERS = ("admin", "twinflow", "twinflow-twin", "twinflow-operator")
MQTT_USERS = ("twinflow-bridge", "twinflow-health")
PG_ROLES = ("postgres", "twinflow", "twinflow_ingest", "twinflow_audit_writer", "twinflow_twin", "twinflow_operator")
# Client roles → (Kafka user, PostgreSQL role) and the client configuration file written for each:
# app = bridges and the telemetry/models/alerts flows; twin = the twin flow (the desired-state gate,
# the only writer of twin.commands); operator = people's CLI (writes twin.desired); admin = setup.
CLIENTS = {
    "app": ("twinflow", "twinflow_ingest", "twinflow.toml"),
    "twin": ("twinflow-twin", "twinflow_twin", "twin.toml"),
    "operator": ("twinflow-operator", "twinflow_operator", "operator.toml"),
    "admin": ("admin", "twinflow", "admin.toml"),
}
BROKER_CN = "twinflow-broker"


class Material:
    """The certificates and passwords of one secure stack, under ``<stack dir>/secure``."""

    def __init__(self, stack_dir: Path) -> None:
        self.dir = stack_dir / SECURE
        self.passwords = self.dir / "passwords"

    def exists(self) -> bool:
        return (self.dir / "ca.pem").exists()

    def file(self, name: str) -> Path:
        return self.dir / name

    def password_file(self, component: str, user: str) -> Path:
        return self.passwords / f"{component}-{user}"

    def password(self, component: str, user: str) -> str:
        return read_secret_file(self.password_file(component, user), f"{component} {user}").get_secret_value()

    def ensure(self) -> None:
        """Create the CA, certificates and passwords once (idempotent; existing ones are kept)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.passwords.mkdir(exist_ok=True)
        os.chmod(self.passwords, 0o700)
        if not self.exists():
            ca_key, ca_cert = certs.make_ca()
            certs.write_pair(self.dir, "server", *certs.issue(ca_key, ca_cert, BROKER_CN, server=True))
            certs.write_pair(self.dir, "client", *certs.issue(ca_key, ca_cert, "twinflow-client", server=False))
            certs.write_ca(self.dir, ca_key, ca_cert)  # last: its presence marks the material complete
        for component, users in (("kafka", KAFKA_USERS), ("mqtt", MQTT_USERS), ("postgres", PG_ROLES)):
            for user in users:
                path = self.password_file(component, user)
                if not path.exists():
                    certs.write_secret(path, certs.new_password())

    # ------------------------------------------------------------------ client settings
    def kafka_extra(self, user: str) -> dict[str, str]:
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "ssl.ca.location": str(self.file("ca.pem")),
            "ssl.certificate.location": str(self.file("client.pem")),
            "ssl.key.location": str(self.file("client.key")),
            "ssl.endpoint.identification.algorithm": "https",
        }

    def client_settings(self, settings: Settings, *, admin: bool = False, role: str | None = None) -> Settings:
        """``settings`` with the credentials of a client role (:data:`CLIENTS`; default app, or admin)."""
        kuser, pguser, _file = CLIENTS[role or ("admin" if admin else "app")]
        return settings.model_copy(
            update={
                "kafka": settings.kafka.model_copy(
                    update={
                        "extra": {**settings.kafka.extra, **self.kafka_extra(kuser)},
                        "sasl_password_file": self.password_file("kafka", kuser),
                        "sasl_password": read_secret_file(self.password_file("kafka", kuser), "kafka"),
                    }
                ),
                "postgres": settings.postgres.model_copy(
                    update={
                        "user": pguser,
                        "password_file": self.password_file("postgres", pguser),
                        "password": read_secret_file(self.password_file("postgres", pguser), "postgres"),
                        "sslmode": "verify-full",
                        "sslrootcert": str(self.file("ca.pem")),
                        "sslcert": str(self.file("client.pem")),
                        "sslkey": str(self.file("client.key")),
                    }
                ),
                "mqtt": self.mqtt_settings(settings.mqtt, "twinflow-bridge"),
            }
        )

    def mqtt_settings(self, base: MqttSettings, user: str, password_file: Path | None = None) -> MqttSettings:
        pw = password_file or self.password_file("mqtt", user)
        return base.model_copy(
            update={
                "username": user,
                "password_file": pw,
                "password": read_secret_file(pw, "mqtt"),
                "tls": True,
                "ca_file": self.file("ca.pem"),
                "cert_file": self.file("client.pem"),
                "key_file": self.file("client.key"),
            }
        )

    def write_client_configs(self, settings: Settings) -> dict[str, Path]:
        """One client configuration per role of :data:`CLIENTS`: ports, TLS files and password *files*."""
        out = {}
        for role, (_k, _pg, name) in CLIENTS.items():
            s = self.client_settings(settings, role=role)
            st, k, pg, mq = s.stack, s.kafka, s.postgres, s.mqtt
            lines = [
                "# written by `twinflow stack up --secure`; secrets are referenced by file, never inlined",
                f"# use: TWINFLOW_CONFIG={self.file(name)} twinflow …",
                "[stack]",
                f'dir = "{st.dir}"',
                f"kafka_port = {st.kafka_port}",
                f"kafka_controller_port = {st.kafka_controller_port}",
                f"postgres_port = {st.postgres_port}",
                f"mosquitto_port = {st.mosquitto_port}",
                "",
                "[kafka]",
                f'sasl_password_file = "{k.sasl_password_file}"',
                "[kafka.extra]",
                *(f'"{key}" = "{value}"' for key, value in self.kafka_extra(k.extra["sasl.username"]).items()),
                "",
                "[postgres]",
                f'user = "{pg.user}"',
                f'password_file = "{pg.password_file}"',
                'sslmode = "verify-full"',
                f'sslrootcert = "{pg.sslrootcert}"',
                f'sslcert = "{pg.sslcert}"',
                f'sslkey = "{pg.sslkey}"',
                "",
                "[mqtt]",
                f'username = "{mq.username}"',
                f'password_file = "{mq.password_file}"',
                "tls = true",
                f'ca_file = "{mq.ca_file}"',
                f'cert_file = "{mq.cert_file}"',
                f'key_file = "{mq.key_file}"',
                "",
            ]
            if role != "admin":  # `twinflow serve` speaks HTTPS only, with the profile's server certificate
                lines += [
                    "[api]",
                    f'tls_cert_file = "{self.file("server.pem")}"',
                    f'tls_key_file = "{self.file("server.key")}"',
                ]
            path = self.file(name)
            path.write_text("\n".join(lines))
            out[role] = path
        return out
