"""The secure profile of the local stack: ``twinflow stack up --secure`` (docs/security.md).

Same services, same ports settings, but:

* **Kafka**: one SASL_SSL listener (SCRAM-SHA-512, TLS with required client certificates),
  the KRaft controller on mutual TLS, the StandardAuthorizer with deny-by-default; users
  ``admin`` (super user) and ``twinflow`` (ACLs on ``telemetry.*``/``twin.*`` topics and
  ``twinflow*`` groups) are created with ``kafka-storage format --add-scram``.
* **Mosquitto**: TLS only with client certificates, no anonymous access, a password file
  (hashed with ``mosquitto_passwd -U``) and topic ACLs: the bridge reads
  ``twinflow/+/telemetry``; a device user may only publish ``twinflow/<its name>/telemetry``.
* **PostgreSQL**: ``ssl = on``, ``hostssl … scram-sha-256 clientcert=verify-ca`` only, a random
  superuser password, and least-privilege login roles (``twinflow`` owns the schema,
  ``twinflow_ingest`` may only insert telemetry, ``twinflow_audit_writer`` may only append to
  the audit trail; the grants are in the migrations).

Everything lives under ``<stack dir>/secure``: the CA, the server and client certificates,
one password file per account (0600) and two client configurations, ``twinflow.toml``
(least privilege: bridge and flow) and ``admin.toml`` (migrations, topics), which name the
secret *files* — no secret is inlined, printed or logged.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from twinflow.settings import MqttSettings, Settings, read_secret_file
from twinflow.stack import certs
from twinflow.stack.kafka import Kafka
from twinflow.stack.mosquitto import Mosquitto
from twinflow.stack.postgres import CONF as PG_CONF
from twinflow.stack.postgres import Postgres
from twinflow.stack.process import StackError, port_open

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
APP_TOPIC_PREFIXES = ("telemetry.", "twin.")
APP_GROUP_PREFIX = "twinflow"


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


def is_secure(settings: Settings) -> bool:
    """Whether the stack folder holds a secure profile (so down/status use the secure services)."""
    return Material(settings.stack.dir).exists()


# ---------------------------------------------------------------------------------------------- Kafka
class SecureKafka(Kafka):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.material = Material(settings.stack.dir)

    def _properties(self) -> str:
        s = self.settings.stack
        m = self.material
        admin_pw = m.password("kafka", "admin")
        base = [
            line
            for line in super()._properties().splitlines()
            if not line.startswith(
                ("listeners=", "advertised.listeners=", "inter.broker.listener.name=", "listener.security")
            )
        ]
        jaas = (
            f'org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="{admin_pw}";'
        )
        return "\n".join(
            [
                *base,
                f"listeners=SASL_SSL://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
                f"advertised.listeners=SASL_SSL://127.0.0.1:{s.kafka_port}",
                "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL",
                "inter.broker.listener.name=SASL_SSL",
                "sasl.enabled.mechanisms=SCRAM-SHA-512",
                "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={m.file('server-bundle.pem')}",
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={m.file('ca.pem')}",
                "ssl.client.auth=required",
                # SASL_SSL listeners ignore the unprefixed setting (KIP-684): require client certificates.
                "listener.name.sasl_ssl.ssl.client.auth=required",
                "ssl.enabled.protocols=TLSv1.3,TLSv1.2",
                "ssl.endpoint.identification.algorithm=https",
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                f"super.users=User:admin;User:CN={BROKER_CN}",
                "allow.everyone.if.no.acl.found=false",
                "",
            ]
        )

    def start(self) -> None:
        # server.properties holds the broker's own SCRAM password: create it 0600 before it is written
        certs.write_secret(self.dir / "server.properties", b"")
        super().start()

    def _format_storage(self, classpath: str, log4j, props, cluster_id: str | None = None) -> None:
        cmd = self._format_command(classpath, log4j, props, cluster_id)
        for user in KAFKA_USERS:
            cmd += [
                "--add-scram",
                f"SCRAM-SHA-512=[name={user},password={self.material.password('kafka', user)}]",
            ]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:  # the command line holds passwords: report the output only
            raise StackError(f"Formatting Kafka storage failed (exit {res.returncode}):\n{res.stdout[-2000:]}")

    def admin_settings(self) -> Settings:
        return self.material.client_settings(self.settings, admin=True)

    def healthy(self) -> bool:
        if not port_open(self.port):
            return False
        from confluent_kafka.admin import AdminClient

        from connectors.kafka.clients import client_config

        try:
            conf = client_config(self.admin_settings(), log_level=0)
            return len(AdminClient(conf).list_topics(timeout=5).brokers) > 0
        except Exception:
            return False

    def after_start(self) -> None:
        from connectors.kafka.clients import ensure_topics

        admin = self.admin_settings()
        ensure_topics(admin)
        grant_app_acls(admin)


def control_topics(s: Settings) -> dict[str, str]:
    """The topics of the control plane and who alone may write them (docs/security.md)."""
    tw = s.twin
    return {
        tw.commands_topic: "twin",  # only the gate's verdicts become commands
        tw.state_topic: "twin",
        tw.outcomes_topic: "twin",
        s.security.desired_rejected_topic: "twin",
        s.alerts.status_topic: "twin",  # the mode: one switch, set through the gate
        tw.desired_topic: "operator",  # people (and later the HTTP API) ask here; the flow decides
    }


def acl_bindings(s: Settings) -> list:
    """Kafka ACLs of the secure profile (deny by default; a DENY wins over an ALLOW).

    * ``twinflow`` (bridges, the other flows): read/write ``telemetry.*``/``twin.*`` except the
      control topics (:func:`control_topics`), which it may only read;
    * ``twinflow-twin`` (the twin flow): the same, and it writes the control topics it owns, but
      never ``twin.desired``;
    * ``twinflow-operator`` (people's CLI): writes ``twin.desired`` and the people's topics
      (model control, events, alert actions), reads the verdicts, acks and state.
    """
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY
    R, W, D = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE

    def topic(name: str, user: str, op: AclOperation, perm=ALLOW, prefixed: bool = False) -> AclBinding:
        kind = ResourcePatternType.PREFIXED if prefixed else ResourcePatternType.LITERAL
        return AclBinding(ResourceType.TOPIC, name, kind, f"User:{user}", "*", op, perm)

    def group(user: str) -> AclBinding:
        return AclBinding(
            ResourceType.GROUP, APP_GROUP_PREFIX, ResourcePatternType.PREFIXED, f"User:{user}", "*", R, ALLOW
        )

    def transactions(user: str) -> list[AclBinding]:  # the bridges ack commands in Kafka transactions
        kind, pattern = ResourceType.TRANSACTIONAL_ID, ResourcePatternType.PREFIXED
        return [AclBinding(kind, APP_GROUP_PREFIX, pattern, f"User:{user}", "*", op, ALLOW) for op in (W, D)]

    owners = control_topics(s)
    out = []
    for client in ("app", "twin"):
        user = CLIENTS[client][0]
        out += [topic(p, user, op, prefixed=True) for p in APP_TOPIC_PREFIXES for op in (R, W, D)]
        out += [topic(name, user, W, DENY) for name, owner in owners.items() if owner != client]
        out.append(group(user))
    out += transactions(CLIENTS["app"][0])
    op_user = CLIENTS["operator"][0]
    writes = [s.twin.desired_topic, s.topics.model_control, s.topics.events, s.alerts.actions_topic]
    reads = [s.twin.outcomes_topic, s.twin.acks_topic, s.twin.state_topic, s.security.desired_rejected_topic]
    out += [topic(name, op_user, op) for name in writes for op in (W, D)]
    out += [topic(name, op_user, op) for name in reads for op in (R, D)]
    out.append(group(op_user))
    return out


def grant_app_acls(admin: Settings) -> None:
    """Create the ACLs of :func:`acl_bindings` (idempotent)."""
    from confluent_kafka.admin import AdminClient

    from connectors.kafka.clients import client_config

    client = AdminClient(client_config(admin))
    for fut in client.create_acls(acl_bindings(admin), request_timeout=30).values():
        fut.result()


# ---------------------------------------------------------------------------------------------- Mosquitto
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


# ---------------------------------------------------------------------------------------------- PostgreSQL
PG_TLS = """\
ssl = on
ssl_cert_file = '{cert}'
ssl_key_file = '{key}'
ssl_ca_file = '{ca}'
ssl_min_protocol_version = 'TLSv1.2'
"""

PG_HBA = """\
# written by `twinflow stack up --secure`: TLS with a client certificate and a password, nothing else
hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-ca
"""


class SecurePostgres(Postgres):
    def __init__(self, settings: Settings) -> None:
        self.material = Material(settings.stack.dir)
        su = read_secret_file(self.material.password_file("postgres", "postgres"), "postgres superuser")
        settings = settings.model_copy(
            update={"stack": settings.stack.model_copy(update={"postgres_superuser_password": su})}
        )
        super().__init__(settings)

    def _tls_dir(self) -> Path:
        tls = self.dir / "tls"
        tls.mkdir(exist_ok=True)
        self._chown(tls)
        os.chmod(tls, 0o700)
        for name in ("ca.pem", "server.pem", "server.key"):
            shutil.copy2(self.material.file(name), tls / name)
            os.chmod(tls / name, 0o600)
            self._chown(tls / name)
        return tls

    def _conf_text(self, sockets: Path) -> str:
        tls = self._tls_dir()
        return PG_CONF.format(port=self.port, sockets=sockets) + PG_TLS.format(
            cert=tls / "server.pem", key=tls / "server.key", ca=tls / "ca.pem"
        )

    def _hba_text(self) -> str:
        return PG_HBA

    def _superuser_conninfo(self, dbname: str = "postgres") -> str:
        m = self.material
        return self.settings.postgres.conninfo(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=self.settings.stack.postgres_superuser_password.get_secret_value(),
            dbname=dbname,
            sslmode="verify-full",
            sslrootcert=str(m.file("ca.pem")),
            sslcert=str(m.file("client.pem")),
            sslkey=str(m.file("client.key")),
        )

    def after_start(self) -> None:
        """Roles with their own passwords; the database belongs to ``twinflow``; PUBLIC gets nothing."""
        import psycopg
        from psycopg import sql

        db = self.settings.postgres.dbname
        with psycopg.connect(self._superuser_conninfo(), autocommit=True) as conn:
            for role in PG_ROLES[1:]:
                exists = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
                conn.execute(
                    sql.SQL("{} role {} login password {}").format(
                        sql.SQL("alter" if exists else "create"),
                        sql.Identifier(role),
                        sql.Literal(self.material.password("postgres", role)),
                    )
                )
            if not conn.execute("select 1 from pg_database where datname = %s", (db,)).fetchone():
                conn.execute(sql.SQL("create database {} owner twinflow").format(sql.Identifier(db)))
            conn.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(db)))
            conn.execute(
                sql.SQL("grant connect, temporary on database {} to twinflow_ingest").format(sql.Identifier(db))
            )
            conn.execute(sql.SQL("grant connect on database {} to twinflow_audit_writer").format(sql.Identifier(db)))
            # The twin flow's sink stages batches in temporary tables; people's CLI only reads.
            conn.execute(sql.SQL("grant connect, temporary on database {} to twinflow_twin").format(sql.Identifier(db)))
            conn.execute(sql.SQL("grant connect on database {} to twinflow_operator").format(sql.Identifier(db)))
        with psycopg.connect(self._superuser_conninfo(db), autocommit=True) as conn:
            conn.execute("revoke all on schema public from public")
            conn.execute(
                "grant usage on schema public"
                " to twinflow_ingest, twinflow_audit_writer, twinflow_twin, twinflow_operator"
            )


def secure_services(settings: Settings) -> list:
    """Start order as for the plain stack (Kafka last)."""
    return [SecurePostgres(settings), SecureMosquitto(settings), SecureKafka(settings)]


def prepare(settings: Settings) -> Material:
    """Create certificates and passwords for ``settings.stack.dir`` (idempotent)."""
    m = Material(settings.stack.dir)
    m.ensure()
    return m
