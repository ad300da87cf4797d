"""A private secure stack (temp folder, free ports) for the tests in this folder; it never
touches the shared stack and is stopped with ``twinflow stack down`` afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.private_stack import PrivateStack


@pytest.fixture(scope="package")
def secure_stack() -> Iterator[PrivateStack]:
    with PrivateStack(secure=True, prefix="twinflow-secure-") as stack:
        yield stack
