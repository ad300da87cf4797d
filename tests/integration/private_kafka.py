"""A throwaway single-node Kafka (KRaft) for tests that must stop the broker.

Reuses :class:`twinflow.stack.kafka.Kafka` with a temporary stack folder and free ports, so the
shared broker is never touched. The jars come from the shared stack (or ``$TWINFLOW_KAFKA_LIBS``);
when neither exists, ``Kafka.install()`` resolves them from Maven Central.
"""

from __future__ import annotations

import os
from pathlib import Path

from twinflow.settings import Settings, load_settings
from twinflow.stack.kafka import Kafka

from .plant_helpers import free_port


def private_kafka(tmp: Path, **overrides) -> tuple[Kafka, Settings]:
    shared = load_settings().stack
    libs_name = f"libs-{shared.kafka_version}"
    libs = Path(os.environ.get("TWINFLOW_KAFKA_LIBS", shared.dir / "kafka" / libs_name))
    stack_dir = tmp / "stack"
    (stack_dir / "kafka").mkdir(parents=True)
    if (libs / ".complete").exists():
        (stack_dir / "kafka" / libs_name).symlink_to(libs, target_is_directory=True)
    port, controller = free_port(), free_port()
    settings = Settings(
        kafka={"bootstrap_servers": f"127.0.0.1:{port}"},
        stack={
            "dir": str(stack_dir),
            "kafka_port": port,
            "kafka_controller_port": controller,
            "kafka_heap": "256m",
        },
        **overrides,
    )
    return Kafka(settings), settings
