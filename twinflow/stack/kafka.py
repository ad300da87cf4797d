"""Apache Kafka 4.x, single node in KRaft mode, resolved from Maven Central.

The jars come from ``scripts/kafka/pom.xml`` via ``mvn dependency:copy-dependencies``;
storage is formatted with Kafka's own StorageTool and the broker runs as ``kafka.Kafka``.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import uuid

from twinflow.settings import PROJECT_ROOT
from twinflow.stack.base import Service
from twinflow.stack.process import (
    StackError,
    apt_install,
    port_open,
    require_port_free,
    run_checked,
    start_daemon,
)

POM = PROJECT_ROOT / "scripts" / "kafka" / "pom.xml"

LOG4J2 = """\
Configuration:
  name: twinflow-kafka
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka
        level: WARN
      - name: org.apache.kafka
        level: WARN
      - name: kafka.server.KafkaServer
        level: INFO
      - name: state.change.logger
        level: WARN
"""


class Kafka(Service):
    name = "kafka"
    start_timeout = 120.0

    @property
    def port(self) -> int:
        return self.settings.stack.kafka_port

    @property
    def libs(self):
        return self.dir / f"libs-{self.settings.stack.kafka_version}"

    def install(self) -> None:
        java = shutil.which("java")
        if java is None or shutil.which("mvn") is None:
            apt_install(["openjdk-17-jre-headless", "maven"], "Kafka needs Java 17+ and Maven")
        version = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
        m = re.search(r'version "(\d+)', version)
        if m is None or int(m.group(1)) < 17:
            raise StackError(
                f"Kafka 4.x needs Java 17 or newer; `java -version` says: {version.strip()[:200]}. "
                "Install openjdk-17-jre-headless or put a newer java first on PATH."
            )
        marker = self.libs / ".complete"
        if marker.exists():
            return
        self.libs.mkdir(parents=True, exist_ok=True)
        run_checked(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={self.libs}",
                f"-Dkafka.version={self.settings.stack.kafka_version}",
            ],
            "Resolving Kafka from Maven Central",
        )
        marker.touch()

    def _properties(self) -> str:
        s = self.settings.stack
        data = self.dir / "data"
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{s.kafka_controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{s.kafka_port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={data}",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                "log.retention.hours=168",
                "log.segment.bytes=268435456",
                "message.max.bytes=2097152",
                "",
            ]
        )

    def start(self) -> None:
        s = self.settings.stack
        require_port_free(s.kafka_port, "kafka", self.port_setting)
        require_port_free(s.kafka_controller_port, "kafka controller", "TWINFLOW_STACK__KAFKA_CONTROLLER_PORT")
        props = self.dir / "server.properties"
        props.write_text(self._properties())
        log4j = self.dir / "log4j2.yaml"
        log4j.write_text(LOG4J2)
        classpath = f"{self.libs}/*"
        if not (self.dir / "data" / "meta.properties").exists():
            self._format_storage(classpath, log4j, props)
        start_daemon(
            [
                "java",
                f"-Xmx{s.kafka_heap}",
                f"-Xms{s.kafka_heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={log4j}",
                f"-Dkafka.logs.dir={self.dir}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(props),
            ],
            log=self.log,
            pidfile=self.pidfile,
        )

    def _format_command(self, classpath: str, log4j, props, cluster_id: str | None = None) -> list[str]:
        # A random id starts with "-" one time in 64: pass it as ``--cluster-id=ID`` so the
        # storage tool's argument parser does not take it for an option.
        cluster_id = cluster_id or base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        return [
            "java",
            "-cp",
            classpath,
            f"-Dlog4j2.configurationFile={log4j}",
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            f"--config={props}",
        ]

    def _format_storage(self, classpath: str, log4j, props, cluster_id: str | None = None) -> None:
        run_checked(self._format_command(classpath, log4j, props, cluster_id), "Formatting Kafka storage")

    def healthy(self) -> bool:
        if not port_open(self.port):
            return False
        from confluent_kafka.admin import AdminClient

        try:
            md = AdminClient({"bootstrap.servers": f"127.0.0.1:{self.port}", "log_level": 0}).list_topics(timeout=3)
            return len(md.brokers) > 0
        except Exception:
            return False

    def after_start(self) -> None:
        from connectors.kafka.clients import ensure_topics

        ensure_topics(self.settings)
