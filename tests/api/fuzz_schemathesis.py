"""schemathesis (``--checks all``, every phase) against a live ``twinflow serve`` (the tests/api fixture: its own
database and topics, the twin and alerts flows, a device), over both OpenAPI documents: ``make api-fuzz``
(docs/api.md). Not part of ``make test`` (the file name is not ``test_*``): a run takes minutes.

Settings in tests/api/schemathesis.toml; the executable is ``$SCHEMATHESIS`` (``make api-fuzz`` installs a pinned
one in ``.venv-fuzz``), ``$FUZZ_EXAMPLES`` the examples per operation (100). The fed twin's scores stay
high meanwhile (``scores_high``), so there are open alerts to act on. Each run's output (as it runs) and
JUnit report are in ``test-artefacts/schemathesis-<version>.txt|.xml``."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.api.conftest import REPO, Live

DOCUMENTS = {"3.0.3": "/api/openapi.json", "3.1": "/api/openapi-3.1.json"}


@pytest.mark.integration
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("version", list(DOCUMENTS))
def test_schemathesis_finds_nothing(live: Live, scores_high: None, version: str) -> None:
    exe = os.environ.get("SCHEMATHESIS") or shutil.which("schemathesis")
    assert exe, "no schemathesis: run `make api-fuzz`, or set SCHEMATHESIS to its executable"
    name = f"schemathesis-{version}"
    command = [
        exe,
        "--config-file",
        "tests/api/schemathesis.toml",
        "--no-color",
        "run",
        live.base + DOCUMENTS[version],
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        os.environ.get("FUZZ_EXAMPLES", "100"),
        "--report",
        "junit",
        "--report-junit-path",
        str(live.artefacts / f"{name}.xml"),
    ]
    env = {**os.environ, "NO_COLOR": "1", "TWINFLOW_FUZZ_TOKEN": live.token}
    output = live.artefacts / f"{name}.txt"
    with output.open("w") as out:  # written as it runs: `tail -f` it
        run = subprocess.run(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    summary = output.read_text()[-6000:]
    print(summary)
    assert run.returncode == 0, summary
