"""`twinflow stack`: idempotent, health-checked, clear errors."""

import socket
import subprocess
import sys

import pytest

from twinflow.settings import StackSettings
from twinflow.stack import StackError, services
from twinflow.stack.mosquitto import Mosquitto

pytestmark = pytest.mark.integration


def test_status_reports_every_core_service_healthy(stack_settings):
    res = subprocess.run([sys.executable, "-m", "twinflow.cli", "stack", "status"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    for name in ("postgres", "mosquitto", "kafka"):
        assert name in res.stdout


def test_up_is_idempotent(stack_settings):
    before = {svc.name: svc.pid() for svc in services(stack_settings)}
    res = subprocess.run([sys.executable, "-m", "twinflow.cli", "stack", "up"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    after = {svc.name: svc.pid() for svc in services(stack_settings)}
    assert before == after and all(after.values())


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
