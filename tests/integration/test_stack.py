"""`twinflow stack`: idempotent, health-checked, clear errors."""

import socket
import subprocess
import sys

import psycopg
import pytest

from twinflow.settings import StackSettings, load_settings
from twinflow.stack import StackError, services
from twinflow.stack.mosquitto import Mosquitto
from twinflow.stack.postgres import postgres_bindir

pytestmark = pytest.mark.integration


def test_status_reports_every_core_service_healthy(stack_settings):
    res = subprocess.run([sys.executable, "-m", "twinflow.cli.main", "stack", "status"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    for name in ("postgres", "mosquitto", "kafka"):
        assert name in res.stdout


def test_up_is_idempotent(stack_settings):
    before = {svc.name: svc.pid() for svc in services(stack_settings)}
    res = subprocess.run([sys.executable, "-m", "twinflow.cli.main", "stack", "up"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    after = {svc.name: svc.pid() for svc in services(stack_settings)}
    assert before == after and all(after.values())


def test_the_stack_postgres_compresses_full_page_images_with_lz4_when_built_with_it(stack_settings):
    """The server `twinflow stack up` started compresses its WAL's full-page images with lz4 (cheaper than
    pglz) when it is PostgreSQL 15+ built with lz4 (Debian's is), else with pglz."""
    bindir = postgres_bindir()
    configure = subprocess.run([str(bindir / "pg_config"), "--configure"], capture_output=True, text=True).stdout
    with psycopg.connect(load_settings().postgres.conninfo()) as conn:
        (value,) = conn.execute("SHOW wal_compression").fetchone()
        major = conn.info.server_version // 10000
    assert value == ("lz4" if major >= 15 and "--with-lz4" in configure else "pglz")


def test_port_taken_is_a_clear_error(stack_settings, tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        s = stack_settings.model_copy(update={"stack": StackSettings(dir=tmp_path / "stack", mosquitto_port=port)})
        with pytest.raises(StackError) as exc:
            Mosquitto(s).up()
    msg = str(exc.value)
    assert f"port {port} is taken" in msg and "TWINFLOW_STACK__MOSQUITTO_PORT" in msg


def test_a_second_mosquitto_starts_on_a_configured_port_and_stops(stack_settings, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = stack_settings.model_copy(update={"stack": StackSettings(dir=tmp_path / "stack", mosquitto_port=port)})
    svc = Mosquitto(s)
    svc.up()
    try:
        assert svc.status().healthy and svc.status().port == port
    finally:
        svc.down()
    assert not svc.status().healthy


def test_kafka_storage_formats_with_a_cluster_id_that_looks_like_an_option(stack_settings, tmp_path):
    """One random cluster id in 64 starts with "-"; the storage tool must still accept it."""
    from twinflow.stack.kafka import LOG4J2, Kafka

    s = stack_settings.model_copy(update={"stack": StackSettings(dir=tmp_path / "stack")})
    kafka = Kafka(s)
    kafka.dir.mkdir(parents=True)
    props, log4j = kafka.dir / "server.properties", kafka.dir / "log4j2.yaml"
    props.write_text(kafka._properties())
    log4j.write_text(LOG4J2)
    classpath = f"{Kafka(stack_settings).libs}/*"
    kafka._format_storage(classpath, log4j, props, cluster_id="-HTX-ADgTje4oSvmO9ypAQ")
    meta = (kafka.dir / "data" / "meta.properties").read_text()
    assert "cluster.id=-HTX-ADgTje4oSvmO9ypAQ" in meta
