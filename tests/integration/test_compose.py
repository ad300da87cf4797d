"""docker-compose.yml must validate (no Docker engine runs here; `config` needs none)."""

import json
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
