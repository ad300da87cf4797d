"""One small retry helper with exponential backoff and jitter, shared by all connectors.

>>> calls = []
>>> def flaky():
...     calls.append(1)
...     if len(calls) < 3:
...         raise ConnectionError("down")
...     return "ok"
>>> retry(flaky, retry_on=(ConnectionError,), base_delay=0.001)
'ok'
>>> len(calls)
3
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def backoff_delay(attempt: int, base_delay: float = 0.2, max_delay: float = 10.0) -> float:
    """The delay after failed attempt number ``attempt`` (1, 2, …): base, 2·base, … capped at
    max_delay, with jitter (between half of it and all of it).

    >>> 0.5 <= backoff_delay(1, 1.0, 60.0) <= 1.0, 30.0 <= backoff_delay(50, 1.0, 60.0) <= 60.0
    (True, True)
    """
    delay = min(base_delay * 2 ** min(attempt - 1, 62), max_delay)
    return random.uniform(delay / 2, delay)


def backoff_delays(base_delay: float = 0.2, max_delay: float = 10.0):
    """Endless exponential delays with jitter: :func:`backoff_delay` of attempts 1, 2, …"""
    attempt = 0
    while True:
        attempt += 1
        yield backoff_delay(attempt, base_delay, max_delay)


def retry(
    fn: Callable[[], T],
    *,
    retry_on: tuple[type[BaseException], ...],
    attempts: int | None = None,
    base_delay: float = 0.2,
    max_delay: float = 10.0,
    what: str = "operation",
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds; ``attempts=None`` retries forever (sinks must not lose data)."""
    delays = backoff_delays(base_delay, max_delay)
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except retry_on as exc:
            if attempts is not None and attempt >= attempts:
                raise
            delay = next(delays)
            log.warning("%s failed (attempt %d): %s; retrying in %.1f s", what, attempt, exc, delay)
            if on_retry is not None:
                on_retry(exc)
            time.sleep(delay)
