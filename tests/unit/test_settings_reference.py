"""``twinflow settings``: the reference of every setting (docs/configuration.md is its output, kept
current) and the settings in effect, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

from benchmarks.replay_cli import REPO, twinflow
from operators.strict import StrictModel
from twinflow.settings import Settings
from twinflow.settings_reference import _comments, reference_markdown, reference_rows


def _twinflow(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return twinflow(args, cwd, env, timeout=120)


def test_docs_configuration_is_the_current_reference() -> None:
    assert (REPO / "docs" / "configuration.md").read_text() == reference_markdown(), (
        "docs/configuration.md is out of date: run `twinflow settings reference > docs/configuration.md`"
    )


def test_every_setting_of_every_section_is_in_the_reference() -> None:
    keys = {r.key for r in reference_rows()}

    def leaves(data: dict, path: str = "") -> list[str]:
        out = []
        for k, v in data.items():
            key = f"{path}{k}"
            out += leaves(v, key + ".") if isinstance(v, dict) and v else [key]
        return out

    dumped = leaves(Settings().model_dump(by_alias=True))
    missing = [k for k in dumped if k not in keys and not any(k.startswith(p + ".") for p in keys)]
    assert not missing, missing
    assert {
        "flow.snapshot_interval_s",
        "twin.partitions",
        "alerts.rules.reorder_window_s",
        "api.sse_keepalive_s",
    } <= keys


def test_a_table_shows_its_own_defaults_and_the_meanings_its_source_gives() -> None:
    rows = {r.key: r for r in reference_rows()}
    # AlertRules: sensor_fault: KindRule = KindRule(0.0, 120.0), not KindRule's class defaults (60, 300)
    fault = "alerts.rules.sensor_fault"
    assert (rows[f"{fault}.min_duration_s"].default, rows[f"{fault}.cool_down_s"].default) == ("0.0", "120.0")
    assert rows["twin.policy.defaults.strategy"].default == '"physical_wins"'  # the built-in layer's value
    assert "Which side wins" in rows["twin.policy.types.<name>.strategy"].meaning  # a base class's comment
    assert rows["alerts.rules.health_major"].meaning == "Severity major below this health index."  # its line's


class _Section(StrictModel):
    # What `first` means, over two
    # comment lines.
    first: int = 1
    second: int = 2
    third: int = 3  # on its line


def test_a_setting_without_a_comment_never_takes_its_neighbours_meaning() -> None:
    assert _comments(_Section) == {"first": "What `first` means, over two comment lines.", "third": "on its line"}


def test_every_setting_has_a_meaning() -> None:
    assert [r.key for r in reference_rows() if not r.meaning] == []


def test_show_prints_the_settings_in_effect_with_what_set_them(tmp_path: Path) -> None:
    (tmp_path / "twinflow.toml").write_text('[flow]\nbatch_size = 123\n[postgres]\npassword = "hunter2"\n')
    res = _twinflow(["settings", "show"], tmp_path, TWINFLOW_API__PORT="9999")
    assert res.returncode == 0, res.stderr
    assert f"# file: {(tmp_path / 'twinflow.toml').resolve()}" in res.stdout
    assert "# variables: TWINFLOW_API__PORT" in res.stdout
    shown = tomllib.loads(res.stdout)  # TOML a user can start a file from
    assert shown["flow"]["batch_size"] == 123 and shown["api"]["port"] == 9999
    assert shown["flow"]["snapshot_interval_s"] == 30.0  # a default
    assert "hunter2" not in res.stdout and shown["postgres"]["password"] == "**********"
    one = _twinflow(["settings", "show", "flow"], tmp_path)
    assert list(tomllib.loads(one.stdout)) == ["flow"]


def test_show_prints_urls_without_the_credentials_they_carry(tmp_path: Path) -> None:
    (tmp_path / "twinflow.toml").write_text(
        '[kafka.extra]\n"sasl.password" = "kafka-pw"\n"linger.ms" = "50"\n'
        '"sasl.oauthbearer.token.endpoint.url" = "https://cid-77:idp-secret@idp.example.com/token?aud=x"\n'
    )
    url = "https://bot-user:pa55word@hooks.example.com:8443/in/alerts?token=s3cret#part-9"
    res = _twinflow(
        ["settings", "show"], tmp_path, TWINFLOW_ALERTS__WEBHOOK_URL=url, TWINFLOW_ALERTS__WEBHOOK_SECRET="k"
    )
    assert res.returncode == 0, res.stderr
    for secret in ("bot-user", "pa55word", "s3cret", "part-9", "kafka-pw", "cid-77", "idp-secret", "aud=x"):
        assert secret not in res.stdout, secret
    shown = tomllib.loads(res.stdout)
    assert shown["alerts"]["webhook_url"] == "https://hooks.example.com:8443/in/alerts?…"
    extra = shown["kafka"]["extra"]
    assert extra["sasl.password"] == "**********" and extra["linger.ms"] == "50"
    assert extra["sasl.oauthbearer.token.endpoint.url"] == "https://idp.example.com/token?…"
    assert "URLs without user, password, query (?…) and fragment" in res.stdout
    alerts = Settings(alerts={"webhook_url": url}).alerts
    assert alerts.webhook_url == url  # what the flow posts to: whole
    assert json.loads(alerts.model_dump_json())["webhook_url"] == url  # a dump handed to a child process: whole


def test_show_refuses_an_unknown_section_and_a_bad_config_without_a_traceback(tmp_path: Path) -> None:
    res = _twinflow(["settings", "show", "flwo"], tmp_path)
    assert res.returncode == 2 and "no section 'flwo'" in res.stderr and "Traceback" not in res.stderr
    (tmp_path / "twinflow.toml").write_text("[flow]\nbatch_sise = 1\n")
    bad = _twinflow(["settings", "show"], tmp_path)
    assert bad.returncode == 2 and "batch_sise: unknown key, did you mean `batch_size`?" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_reference_prints_the_markdown(tmp_path: Path) -> None:
    res = _twinflow(["settings", "reference"], tmp_path)
    assert res.returncode == 0 and res.stdout == reference_markdown()
