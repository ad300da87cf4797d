"""Kafka in the secure profile: one SASL_SSL listener (SCRAM-SHA-512, TLS with required client
certificates), the KRaft controller on mutual TLS, users created at storage format, and the ACLs
of each client role (deny by default; docs/security.md).
"""

from __future__ import annotations

import subprocess

from twinflow.settings import Settings
from twinflow.stack import certs
from twinflow.stack.kafka import Kafka
from twinflow.stack.process import StackError, port_open
from twinflow.stack.secure.material import BROKER_CN, CLIENTS, KAFKA_USERS, Material

APP_TOPIC_PREFIXES = ("telemetry.", "twin.")
APP_GROUP_PREFIX = "twinflow"


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
