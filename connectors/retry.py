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


def backoff_delays(base_delay: float = 0.2, max_delay: float = 10.0):
    """Endless exponential delays with full jitter: base, 2·base, … capped at max_delay."""
    delay = base_delay
    while True:
        yield random.uniform(delay / 2, delay)
        delay = min(delay * 2, max_delay)


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
