"""A private plain stack (temp folder, free ports) for fault injection: never the shared one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.private_stack import PrivateStack


@pytest.fixture(scope="package")
def fault_stack() -> Iterator[PrivateStack]:
    with PrivateStack(prefix="twinflow-faults-") as stack:
        yield stack
