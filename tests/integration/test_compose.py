"""docker-compose.yml must validate (no Docker engine runs here; `config` needs none)."""

import json
import os
import subprocess

from tests.conftest import REPO


def test_docker_compose_config_validates():
    res = subprocess.run(["docker", "compose", "config", "--format", "json"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    cfg = json.loads(res.stdout)
    services = set(cfg["services"])
    assert {"timescaledb", "kafka", "mosquitto", "grafana", "flow", "bridge-mqtt"} <= services
    assert cfg["services"]["timescaledb"]["image"].startswith("timescale/timescaledb")
    assert cfg["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    grafana_mounts = {v["target"] for v in cfg["services"]["grafana"]["volumes"]}
    assert "/etc/grafana/provisioning" in grafana_mounts
    assert (REPO / "grafana/provisioning/datasources/twinflow.yml").is_file()
    assert cfg["services"]["init"]["build"]["context"] == str(REPO)
    assert cfg["services"]["flow"]["image"] == cfg["services"]["init"]["image"]
    assert cfg["services"]["flow"]["command"] == ["run", "pipeline"]  # the fused flow is the default
    assert cfg["services"]["flow"]["environment"]["TWINFLOW_FLOW__PIPELINE_INGEST"] == "true"  # rows in the pipeline


def test_the_pipeline_can_leave_the_rows_to_the_telemetry_service():
    """The set-up for thousands of twins per process (docs/performance.md, "Twins per process"): the
    pipeline without ingest and the telemetry service beside it, the separate twin and models scaled to 0."""
    env = {**os.environ, "TWINFLOW_PIPELINE_INGEST": "false"}
    res = subprocess.run(
        ["docker", "compose", "--profile", "separate-flows", "config", "--format", "json"],
        cwd=REPO, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    services = json.loads(res.stdout)["services"]
    assert services["flow"]["environment"]["TWINFLOW_FLOW__PIPELINE_INGEST"] == "false"
    assert services["telemetry"]["command"] == ["run", "telemetry"]
