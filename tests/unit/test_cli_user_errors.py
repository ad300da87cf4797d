"""A person's mistakes and unreachable services at the `twinflow` command line: one message naming
what to fix and a non-zero exit code (2 for a usage or configuration mistake, 1 for a service that
does not answer), never a traceback. Each test runs the real command as a child process; no service
of the local stack is needed (the services named are closed or silent ports)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _twinflow(args: list[str | bytes], timeout: float = 90, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TWINFLOW_") or k.startswith("TWINFLOW_STACK__")}
    return subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", *args],
        env={**clean, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        cwd=REPO,
    )


def _user_error(res: subprocess.CompletedProcess[str], code: int, *texts: str) -> None:
    """Exit code ``code``, no traceback, and every text in the output (line breaks of the usage box
    removed)."""
    out = res.stdout + res.stderr
    assert res.returncode == code, out
    assert "Traceback" not in out, out
    flat = " ".join(line.strip(" │╭╮╰╯─") for line in out.splitlines())
    for text in texts:
        assert text in flat, out


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


# ----------------------------------------------------------------------------- services that do not answer
@pytest.mark.parametrize(
    "args",
    [["twin", "list"], ["twin", "show", "pump-001"], ["alerts", "metrics"], ["db", "migrate"], ["alerts", "list"]],
)
def test_postgres_refusing_connections_is_a_message_naming_the_settings(args: list[str]) -> None:
    res = _twinflow(args, TWINFLOW_POSTGRES__PORT="1")
    _user_error(res, 1, "PostgreSQL cannot be used:", "port 1 failed", "twinflow stack status", "POSTGRES__PORT")


def test_a_postgres_server_that_never_answers_is_an_error_after_the_connect_timeout(silent_port: int) -> None:
    started = time.monotonic()
    res = _twinflow(
        ["twin", "list"], TWINFLOW_POSTGRES__PORT=str(silent_port), TWINFLOW_POSTGRES__CONNECT_TIMEOUT_S="2"
    )
    _user_error(res, 1, "PostgreSQL cannot be used: connection timeout expired")
    assert time.monotonic() - started < 30


def test_kafka_refusing_connections_is_a_message_naming_the_setting(tmp_path: Path) -> None:
    key = tmp_path / "me.pem"
    assert _twinflow(["key", "new", str(key)]).returncode == 0
    res = _twinflow(
        ["twin", "set-desired", "pump-001", "speed=1"],
        TWINFLOW_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:1",
        TWINFLOW_SECURITY__KEY_FILE=str(key),
    )
    _user_error(res, 1, "Kafka did not answer (127.0.0.1:1)", "TWINFLOW_KAFKA__BOOTSTRAP_SERVERS")
    assert "|FAIL|" not in res.stderr  # librdkafka's line per connection attempt (hundreds) buried the message


def test_a_one_shot_kafka_command_keeps_to_its_timeout_and_to_one_line() -> None:
    """`model reset --timeout 5` with Kafka down took 30 s (the topic check had its own timeout) and
    printed ~290 librdkafka lines before its own."""
    started = time.monotonic()
    res = _twinflow(["model", "reset", "pump-001", "--timeout", "3"], TWINFLOW_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:1")
    _user_error(res, 1, "Kafka did not answer (127.0.0.1:1)")
    assert time.monotonic() - started < 15
    assert len((res.stdout + res.stderr).strip().splitlines()) == 1, res.stderr


def test_a_conninfo_libpq_cannot_parse_is_a_usage_error() -> None:
    for args in (["db", "migrate"], ["audit", "verify"]):
        res = _twinflow([*args, "--conninfo", "garbage"])
        _user_error(res, 2, "Invalid value for '--conninfo'", 'missing "=" after "garbage"')


# ----------------------------------------------------------------------------- arguments and paths
def test_an_argument_that_is_not_utf8_is_named() -> None:
    res = _twinflow([b"twin", b"show", b"pump\xff"], TWINFLOW_POSTGRES__PORT="1")
    _user_error(res, 2, "argument 3 (b'pump\\xff') is not UTF-8 text")


def test_a_path_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    res = _twinflow(["key", "new", str(tmp_path / "no-such-folder" / "me.pem")])
    _user_error(res, 2, f"{tmp_path / 'no-such-folder' / 'me.pem'}: No such file or directory; fix the path")
    (tmp_path / "taken").write_text("")
    res = _twinflow(["certs", "opcua", "--out", str(tmp_path / "taken")])
    _user_error(res, 2, f"{tmp_path / 'taken'}: File exists; fix the path")


# ----------------------------------------------------------------------------- numbers out of range
@pytest.mark.parametrize(
    ("args", "message"),
    [
        # a negative timeout was "do not wait" (exit 0), nan waited 0 s and said "no verdict within nan s"
        (["twin", "set-desired", "pump-001", "speed=1", "--timeout", "-5"], "'--timeout'"),
        (["twin", "set-desired", "pump-001", "speed=1", "--timeout", "nan"], "'--timeout'"),
        (["alerts", "maintenance", "pump-001", "on", "--timeout", "inf"], "inf is not a finite number"),
        # nan and inf were sent as null and refused with "Expected `bool | float`, got `null`"
        (["twin", "set-desired", "pump-001", "speed=nan"], "'nan' is not a finite number nor true/false"),
        (["twin", "set-desired", "pump-001", "speed=1e999"], "'1e999' is not a finite number nor true/false"),
        (["command", "send", "pump-001", "speed", "inf"], "'inf' is neither a finite number nor true/false"),
        # tracebacks: bigint out of range, LIMIT must not be negative, OverflowError
        (["twin", "list", "--limit", "99999999999999999999"], "'--limit'"),
        (["alerts", "list", "--limit", "-1"], "'--limit'"),
        (["alerts", "metrics", "--hours", "inf"], "'--hours'"),
        (["alerts", "metrics", "--hours", "1e300"], "'--hours'"),
        (["alerts", "shelve", "al-1", "--for", "1e300h", "--reason", "r", "--by", "me"], "'--for'"),
        (["alerts", "shelve", "al-1", "--for", "infm", "--reason", "r", "--by", "me"], "write a positive number"),
        (["alerts", "shelve", "al-1", "--for", "-5m", "--reason", "r", "--by", "me"], "write a positive number"),
        # -w 0 ran nothing and exited 0; -w -1 was a traceback; -p 0 ran one process
        (["run", "telemetry", "-w", "0"], "'-w' / '--workers'"),
        (["twin", "run", "-w", "-1"], "'-w' / '--workers'"),
        (["run", "telemetry", "-p", "0"], "'-p' / '--processes'"),
        # 70000 was served on another port, -1 failed in uvicorn with exit code 3
        (["serve", "--port", "70000"], "'--port'"),
        # a negative or nan duration ran (nan: forever), tick nan hung then a traceback, 0 took the default
        (["simulate", "--duration", "nan"], "'--duration'"),
        (["simulate", "--tick", "0"], "'--tick'"),
        (["simulate", "--random-faults", "-3", "--duration", "5"], "'--random-faults'"),
        (["simulate", "--only", ","], "--only: no protocol named; use one or more of"),
        (["model", "reset", "pump-001", "--timeout", "nan"], "'--timeout'"),
        (["command", "send", "pump-001", "speed", "1", "--wait", "-1"], "'--wait'"),
        (["demo", "--duration", "inf"], "inf is not a finite number"),
    ],
)
def test_a_number_out_of_range_is_a_usage_error(args: list[str], message: str) -> None:
    res = _twinflow(args, TWINFLOW_POSTGRES__PORT="1", TWINFLOW_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:1")
    _user_error(res, 2, message)


def test_an_empty_by_is_refused_before_anything_is_sent() -> None:
    res = _twinflow(["alerts", "ack", "al-1", "--by", " "], TWINFLOW_POSTGRES__PORT="1")
    _user_error(res, 2, "--by: name who acts")


# ----------------------------------------------------------------------------- files and variables
def test_a_file_that_is_not_utf8_is_named_with_the_byte(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[flow]\nname = "caf\xe9"\n')
    res = _twinflow(["settings", "show"], TWINFLOW_CONFIG=str(bad))
    _user_error(res, 2, f"configuration file {bad}: not UTF-8 text (byte 0xe9 at offset 18, line 2)")
    res = _twinflow(["policy", "check", str(bad)])
    _user_error(res, 2, f"policy file {bad}: not UTF-8 text")
    res = _twinflow(["bridge", "opcua", "--mapping", str(bad)])  # was a traceback
    _user_error(res, 2, f"invalid mapping file {bad}:", "not UTF-8 text (byte 0xe9")


def test_a_variable_that_is_not_utf8_is_named() -> None:
    env = {**os.environ, "TWINFLOW_POSTGRES__HOST": "db"}
    env_b = {k.encode(): v.encode() for k, v in env.items()} | {b"TWINFLOW_POSTGRES__HOST": b"db\xff"}
    res = subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", "twin", "list"],
        env=env_b,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=90,
        cwd=REPO,
    )
    _user_error(res, 2, "TWINFLOW_POSTGRES__HOST (environment): not UTF-8 text. Fix or unset the variable.")


def test_key_new_prints_an_entry_that_is_toml_for_any_subject(tmp_path: Path) -> None:
    import tomllib

    res = _twinflow(["key", "new", str(tmp_path / "k.pem"), "--subject", "ann@plant"])
    assert res.returncode == 0, res.stderr
    entry = res.stdout.split("\n", 1)[1]  # was [subject.ann@plant]: not TOML
    assert list(tomllib.loads(entry)["subject"]) == ["ann@plant"]
    res = _twinflow(["key", "new", str(tmp_path / "k2.pem"), "--subject", ""])
    _user_error(res, 2, "--subject: name the subject")
    assert not (tmp_path / "k2.pem").exists()


# ----------------------------------------------------------------------------- long-running commands
def test_a_bridge_says_when_its_mqtt_broker_cannot_be_reached_and_still_stops_cleanly(tmp_path: Path) -> None:
    """It received nothing and said only "received 0" every 10 s; now a warning at each retry names the
    broker, and SIGTERM still ends it with exit code 0."""
    import signal

    log = tmp_path / "bridge.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TWINFLOW_") or k.startswith("TWINFLOW_STACK__")}
    env = {**clean, "TWINFLOW_MQTT__PORT": "1", "TWINFLOW_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    env["TWINFLOW_BRIDGE__BUFFER__SPILL_DIR"] = str(tmp_path)  # never the stack's spill file
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "twinflow.cli.main", "bridge", "mqtt"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 30
            while b"MQTT broker 127.0.0.1:1 cannot be reached" not in log.read_bytes():
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "Traceback" not in log.read_text()
