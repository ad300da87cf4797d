"""Helpers for the connector integration tests: unique topics/twins, free ports, Kafka reads."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message

from connectors.bridges.mapping.loading import load_mapping
from connectors.bridges.mapping.schema import Mapping
from connectors.kafka.clients import client_config, ensure_topics, topic_specs
from tests.process_helpers import Background
from twinflow.runner import free_ports
from twinflow.settings import Settings, load_settings


def free_port() -> int:
    return free_ports(1)[0]


def private_settings(tmp: Path, uid: str, **overrides) -> Settings:
    """Settings whose topics, groups and files are private to one test."""
    twin = {
        "commands_topic": f"it.commands.{uid}",
        "acks_topic": f"it.acks.{uid}",
        **overrides.pop("twin", {}),
    }
    s = Settings(
        twin=twin,
        topics={
            "raw": f"it.raw.{uid}",
            "dlq": f"it.dlq.{uid}",
            "ground_truth": f"it.gt.{uid}",
            "raw_partitions": 1,
        },
        bridge={
            "command_group": f"it-{uid}",
            "buffer": {"spill_dir": str(tmp / "buffer")},
            "reconnect_max_s": 2.0,
        },
        sim={"ground_truth_file": str(tmp / "ground-truth.jsonl"), "tick_s": 0.1},
        **overrides,
    )
    ensure_topics(s, topic_specs(s))
    CREATED.append(s)
    return s


# Settings whose private topics are deleted at the end of the session (conftest).
CREATED: list[Settings] = []


def settings_of(env: dict[str, str]) -> Settings:
    """The settings a ``twinflow`` command started with ``env`` (TWINFLOW_* variables over this
    process's environment) loads, with their topics made (and deleted at the end of the session)."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        s = load_settings()
    ensure_topics(s)
    CREATED.append(s)
    return s


@contextlib.contextmanager
def started_flows(env: dict[str, str], flows: list[str], logs: Path) -> Iterator[Settings]:
    """``settings_of(env)`` while ``twinflow run <flow> --no-recovery`` runs in the background for each
    of ``flows`` with ``env`` (log: ``logs/<flow>.log``); at the end each gets SIGTERM, in that order,
    and must exit within 30 s."""
    settings = settings_of(env)
    jobs: list[Background] = []
    try:
        for flow in flows:
            jobs.append(Background(["run", flow, "--no-recovery"], {**os.environ, **env}, logs / f"{flow}.log"))
        yield settings
    finally:
        with contextlib.ExitStack() as stops:  # every job is stopped even when one fails to
            for job in reversed(jobs):
                stops.callback(job.stop)


def drop_topics(settings_list: list[Settings]) -> None:
    """Delete the private topics of these settings from the shared broker."""
    from confluent_kafka.admin import AdminClient

    if not settings_list:
        return
    admin = AdminClient(client_config(settings_list[0]))
    # once each: settings may share topics, and librdkafka crashes on a name listed twice
    names = sorted({spec.name for s in settings_list for spec in topic_specs(s) if spec.name.startswith("it.")})
    for fut in admin.delete_topics(names, operation_timeout=30).values():
        with contextlib.suppress(Exception):  # already gone
            fut.result()


def plant_toml(uid: str, opcua_port: int, modbus_port: int, opcua_extra: str = "") -> str:
    """One pump per protocol (twin ids carry ``uid``); MQTT on this stack's broker."""
    return f"""
[opcua]
endpoint = "opc.tcp://127.0.0.1:{opcua_port}/twinflow/"
publishing_interval_ms = 100
sampling_interval_ms = 50
{opcua_extra}

[mqtt]
port = {Settings().mqtt.port}
qos = 1
client_id = "it-bridge-{uid}"

[modbus]
port = {modbus_port}
poll_interval_ms = 200

[[assets]]
twin_id = "pump-ua-{uid}"
type = "pump"
protocol = "opcua"
[assets.params]
speed_sp_rpm = {{ node = "ns=2;s=ua-{uid}.speed_sp_rpm", writable = true }}
speed_rpm = {{ node = "ns=2;s=ua-{uid}.speed_rpm" }}
flow_m3h = {{ node = "ns=2;s=ua-{uid}.flow_m3h" }}
temp_c = {{ node = "ns=2;s=ua-{uid}.temp_c" }}

[[assets]]
twin_id = "pump-mq-{uid}"
type = "pump"
protocol = "mqtt"
topic = "it/{uid}/pump/state"
command_topic = "it/{uid}/pump/cmd"
[assets.params]
speed_sp_rpm = {{ path = "speed_sp_rpm", writable = true }}
speed_rpm = {{ path = "motor.speed_rpm" }}
flow_m3h = {{ path = "flow_m3h" }}
temp_c = {{ path = "temp_c" }}
vibration_mm_s = {{ topic = "it/{uid}/pump/vibration" }}

[[assets]]
twin_id = "pump-mb-{uid}"
type = "pump"
protocol = "modbus"
unit_id = 3
[assets.params]
speed_sp_rpm = {{ register = "holding", address = 0, type = "uint16", writable = true }}
speed_rpm = {{ register = "input", address = 0, type = "uint16" }}
flow_m3h = {{ register = "input", address = 1, type = "float32", word_order = "little" }}
temp_c = {{ register = "input", address = 3, type = "int16", scale = 0.1, offset = -40 }}
power_kw = {{ register = "input", address = 4, type = "uint32", scale = 0.001 }}
"""


def write_mapping(tmp: Path, text: str, name: str = "plant.toml") -> Mapping:
    path = tmp / name
    path.write_text(text)
    return load_mapping(path)


def consume(
    settings: Settings,
    topic: str,
    done: Callable[[list[Message]], bool],
    timeout: float = 30.0,
) -> list[Message]:
    """Read ``topic`` from the beginning until ``done(messages)`` or ``timeout`` seconds."""
    c = Consumer(
        client_config(
            settings,
            **{
                "group.id": f"it-reader-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            },
        )
    )
    c.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error() is None:
                    out.append(m)
            if done(out):
                break
    finally:
        c.close()
    return out


def send_command(settings: Settings, cmd) -> None:
    """Put a command straight on ``twin.commands`` (tests of the bridges' command path only: in a
    deployment only the twin flow writes that topic, behind the desired-state gate)."""
    from confluent_kafka import Producer

    from connectors.kafka.clients import producer_config
    from operators.records.commands import encode_command

    producer = Producer(producer_config(settings, **{"linger.ms": 0}))
    producer.produce(settings.twin.commands_topic, key=cmd.twin_id.encode(), value=encode_command(cmd))
    assert producer.flush(15) == 0, f"command {cmd.command_id} not acknowledged by Kafka within 15 s"


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
