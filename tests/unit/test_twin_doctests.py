"""The examples in the twin operators' docstrings are tests too."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "operators.twin.sync_strategy",
    "operators.records.twin",
    "operators.twin.hysteresis",
    "operators.twin.reconcile",
    "operators.twin.event_windows",
    "operators.twin.inputs",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
