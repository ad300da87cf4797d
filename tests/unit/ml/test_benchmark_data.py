from pathlib import Path

import pytest

from benchmarks.data import REPO_ROOT, data_dir, require


def test_data_dir_is_a_sibling_of_the_clone_unless_overridden(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("TWINFLOW_DATA_DIR", raising=False)
    assert data_dir() == REPO_ROOT.parent / "shared" / "data"
    monkeypatch.setenv("TWINFLOW_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path


def test_missing_data_stops_with_a_clear_message(tmp_path: Path):
    with pytest.raises(SystemExit, match="TWINFLOW_DATA_DIR"):
        require(tmp_path / "skab")
