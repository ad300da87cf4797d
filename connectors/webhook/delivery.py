"""The alerts flow's webhook delivery: background threads that POST what the outbox holds.

The alerts flow never waits for the receiver: its alert sink queues each version in the
``webhook_outbox`` table in the transaction that stores it (:mod:`connectors.postgres.webhook_outbox`),
and a :class:`Deliverer` per process (``concurrency`` threads, one database connection each)
delivers them:

* **In order per alert**, each version in a transaction of its own that claims the row, POSTs it
  (:class:`~connectors.webhook.sender.WebhookSender`, one attempt) and records the answer. Alerts
  are delivered side by side: one alert waiting for its retry never holds up another.
* **Retries**: a network error, 429 or 5xx sets the version's next attempt ``backoff_s`` later,
  doubling up to ``backoff_max_s``; a 429 or 503 with ``Retry-After`` sets it when the receiver
  asked instead (:func:`retry_delay`). It is retried until delivered or until it has waited
  ``retention_s`` (then it fails as expired). A receiver down for an hour gets everything after.
* **Refusals** (another 4xx, a redirect) fail the version at once with the answer as its reason
  (``twinflow alerts deliveries --state failed``); the alert's next versions are still delivered.
* **At least once**: a process killed between the receiver's answer and the commit delivers that
  version again after the restart, with the same ``Idempotency-Key``; a delivered (committed)
  version is never sent again, however often the flow replays.

:class:`OutboxDelivery` is the configuration the alerts flow's sink holds; :meth:`OutboxDelivery.acquire`
starts the process's deliverer on the first writer and :meth:`OutboxDelivery.release` stops it with
the last. At the end of a run that was not asked to stop (``--no-tail``) the deliverer first
delivers what is due until a pass delivers nothing (a receiver that is down waits for the next run).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from connectors.postgres import webhook_outbox as sql
from connectors.postgres.session import Session
from connectors.retry import backoff_delay
from connectors.stopping import STOP
from connectors.webhook.sender import Refused, Transient, WebhookSender

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 30.0  # expiry and clean-up of the outbox, at most this often (and at the start)
RETRY_AFTER_MAX_S = 3600.0  # a receiver's Retry-After is honoured up to an hour (and within the retention)


def retry_delay(backoff_s: float, retry_after_s: float | None, retention_left_s: float, floor_s: float) -> float:
    """Seconds until the next attempt: the receiver's ``Retry-After`` when it gave one (at least
    ``floor_s``, at most :data:`RETRY_AFTER_MAX_S`), else the backoff; never past the end of the
    retention (``retention_left_s``), when the version is tried a last time before it expires.

    >>> retry_delay(0.4, None, 100, 0.2), retry_delay(0.4, 30, 100, 0.2), retry_delay(0.4, 0, 100, 0.2)
    (0.4, 30, 0.2)
    >>> retry_delay(0.4, 86400, 1e6, 0.2), retry_delay(0.4, 7200, 50, 0.2), retry_delay(0.4, 30, -5, 0.2)
    (3600.0, 50, 0.2)
    """
    delay = backoff_s if retry_after_s is None else min(max(retry_after_s, floor_s), RETRY_AFTER_MAX_S)
    return max(min(delay, retention_left_s), min(floor_s, delay))


@dataclass(frozen=True)
class OutboxDelivery:
    """Where and how the outbox is delivered (``alerts.webhook_*`` settings)."""

    conninfo: str
    url: str
    secret: bytes
    timeout_s: float = 5.0
    backoff_s: float = 1.0
    backoff_max_s: float = 300.0
    retention_s: float = 3 * 86400.0
    concurrency: int = 4
    poll_s: float = 1.0

    def acquire(self) -> Deliverer:
        """This process's deliverer for this configuration, started on the first call."""
        with _lock:
            entry = _running.get(self)
            if entry is None:
                entry = _running[self] = [Deliverer(self), 0]
                entry[0].start()
            entry[1] += 1
            return entry[0]

    def wake(self) -> None:
        """Versions were queued: the running deliverer looks at once (else at its next poll)."""
        with _lock:
            entry = _running.get(self)
        if entry is not None:
            entry[0].wake()

    def release(self) -> None:
        """Stop the deliverer when its last user releases it."""
        with _lock:
            entry = _running.get(self)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _running[self]
        entry[0].stop(drain=not STOP.requested.is_set())


_lock = threading.Lock()
_running: dict[OutboxDelivery, list[Any]] = {}


class Deliverer:
    """``concurrency`` threads delivering the outbox (see the module docstring)."""

    def __init__(self, config: OutboxDelivery) -> None:
        self.config = config
        self.sender = WebhookSender(config.url, config.secret, timeout_s=config.timeout_s)
        self._stop = threading.Event()
        self._wakes = [threading.Event() for _ in range(config.concurrency)]
        self._threads: list[threading.Thread] = []
        self._swept_at = 0.0

    def start(self) -> None:
        for i, wake in enumerate(self._wakes):
            t = threading.Thread(target=self._run, args=(i, wake), name=f"webhook-delivery-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        log.info("webhook: delivering the outbox to %s (%d at once)", self.sender.shown, len(self._wakes))

    def wake(self) -> None:
        """New versions were queued: look now rather than at the next poll."""
        for wake in self._wakes:
            wake.set()

    def stop(self, *, drain: bool = False) -> None:
        """End the threads (a delivery in flight has up to 3 s to finish); ``drain``: then deliver
        what is due in this thread until a pass delivers nothing."""
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + min(self.config.timeout_s + 1, 3.0)  # a stop must end within 10 s
        for t in self._threads:  # one still POSTing goes on as a daemon: unrecorded, it is sent again later
            t.join(max(deadline - time.monotonic(), 0))
        if drain:
            session = self._session()
            try:
                while not STOP.requested.is_set() and self._pass(session):
                    pass
            except psycopg.Error as exc:
                log.warning("webhook: the outbox could not be drained (the next run delivers it): %s", exc)
            finally:
                session.close()

    def _session(self) -> Session:
        return Session(self.config.conninfo, max_attempts=1, name="WebhookDelivery")

    def _pass(self, session: Session) -> int:
        """Deliver every due version once, in order; how many were delivered."""
        delivered = 0
        while (outcome := self.deliver_one(session)) is not None:
            if outcome == "retry":
                return 0  # the receiver is failing: what is left waits for its next attempt
            delivered += outcome == "delivered"
        return delivered

    def _run(self, index: int, wake: threading.Event) -> None:
        session = self._session()
        failures = 0
        while not self._stop.is_set():
            try:
                if index == 0:
                    self._sweep(session)
                outcome = self.deliver_one(session)
                failures = 0
            except Exception as exc:  # the database is away, or a bug: never end the thread
                failures += 1
                delay = backoff_delay(failures, 0.5, 30.0)
                why = sql.NO_OUTBOX if isinstance(exc, psycopg.errors.UndefinedTable) else str(exc)
                log.warning("webhook: outbox delivery failed (%s); again in %.1f s", why, delay)
                session.close()
                self._stop.wait(delay)
                continue
            if outcome is None:  # nothing due
                wake.wait(self.config.poll_s)
                wake.clear()
        session.close()

    def _sweep(self, session: Session) -> None:
        now = time.monotonic()
        if now - self._swept_at < min(SWEEP_EVERY_S, self.config.retention_s / 4):
            return
        self._swept_at = now
        params = {"retention_s": self.config.retention_s}

        def run(conn: psycopg.Connection) -> tuple[int, int]:
            return conn.execute(sql.EXPIRE, params).rowcount, conn.execute(sql.PURGE, params).rowcount

        expired, purged = session.transaction(run, "webhook outbox clean-up")
        if expired:
            log.error(
                "webhook: %d alert version(s) not delivered within alerts.webhook_retention_s=%g s, failed"
                " (twinflow alerts deliveries --state failed)",
                expired,
                self.config.retention_s,
            )
        if purged:
            log.info("webhook: %d settled outbox row(s) older than the retention deleted", purged)

    def deliver_one(self, session: Session) -> str | None:
        """Claim the next due version, POST it, record the outcome: ``delivered``, ``failed``,
        ``retry``, or None when nothing is due."""
        return session.transaction(self._deliver_in, "webhook delivery")

    def _deliver_in(self, conn: psycopg.Connection) -> str | None:
        c = self.config
        row = conn.execute(sql.CLAIM, {"retention_s": c.retention_s}).fetchone()
        if row is None:
            return None
        alert_id, version, body, attempts, expired, age_s = row
        key = {"alert_id": alert_id, "version": version}
        try:
            status = self.sender.post(body.encode(), f"{alert_id}:{version}")
        except Refused as exc:
            log.error("webhook: alert %s v%d refused, not retried: %s", alert_id, version, exc)
            conn.execute(sql.FAILED, {**key, "status": exc.status, "error": str(exc)})
            return "failed"
        except Transient as exc:
            if expired:
                error = f"expired: not delivered within alerts.webhook_retention_s ({c.retention_s:g} s)"
                error += f"; last error: {exc}"
                log.error("webhook: alert %s v%d %s", alert_id, version, error)
                conn.execute(sql.FAILED, {**key, "status": exc.status, "error": error})
                return "failed"
            backoff = backoff_delay(attempts + 1, c.backoff_s, c.backoff_max_s)
            delay = retry_delay(backoff, exc.retry_after_s, c.retention_s - age_s, c.backoff_s)
            asked = "" if exc.retry_after_s is None else f" (the receiver asked for {exc.retry_after_s:g} s)"
            (log.warning if attempts == 0 or exc.retry_after_s is not None else log.info)(
                "webhook: alert %s v%d not delivered (attempt %d): %s; again in %.1f s%s",
                alert_id,
                version,
                attempts + 1,
                exc,
                delay,
                asked,
            )
            conn.execute(sql.RETRY, {**key, "status": exc.status, "error": str(exc), "delay_s": delay})
            return "retry"
        conn.execute(sql.DELIVERED, {**key, "status": status})
        return "delivered"
