"""POST JSON to a webhook, signed with HMAC-SHA256: one attempt (the outbox retries,
:mod:`connectors.webhook.delivery`).

Headers sent with every request:

* ``X-Twinflow-Timestamp``: Unix seconds when the request was signed;
* ``X-Twinflow-Signature``: ``sha256=`` + hex HMAC-SHA256 of ``timestamp + "." + body``
  with the shared secret (receivers check it with :func:`verify`);
* ``Idempotency-Key`` and ``X-Twinflow-Delivery`` (the same value): a stable id of the payload
  (alert id and version) for deduplication, since a retry after a lost response, or after the
  alerts flow was killed before it recorded the answer, delivers the same payload again.

Network errors, HTTP 429 and 5xx (and answers that are not HTTP) are :class:`Transient`: worth
another attempt later; a 429 or 503 with ``Retry-After`` (seconds or an HTTP-date) says when, in
:attr:`Transient.retry_after_s` (:func:`retry_after_s`). Other 4xx answers are :class:`Refused`.
Redirects are not followed (a client following a 301, 302 or 303 repeats a POST as a GET without its
body: the alert would be lost while the receiver answers 200): a 3xx is refused and names where it points.
Errors name the URL without its user, password, query and fragment
(:func:`~connectors.config.shown.shown_url`): they are stored in the outbox and shown by the API and
the web view, and a receiver's token often rides there.

>>> sig = sign(b"k", "1700000000", b'{"a":1}')
>>> verify(b"k", "1700000000", b'{"a":1}', sig, now=1700000010)
True
>>> verify(b"other", "1700000000", b'{"a":1}', sig, now=1700000010)
False
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from connectors.config.shown import shown_url

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twinflow-Signature"
TIMESTAMP_HEADER = "X-Twinflow-Timestamp"
DELIVERY_HEADER = "X-Twinflow-Delivery"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class Transient(Exception):
    """A failure worth another attempt later (network error, 429, 5xx, not an HTTP answer);
    ``retry_after_s``: how long the receiver asked to wait (its ``Retry-After``), if it said."""

    def __init__(self, message: str, status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP-date (RFC 9110); None
    when absent or not one of these; a date in the past is 0.

    >>> now = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    >>> retry_after_s("120", now), retry_after_s("Mon, 07 Dec 2026 14:02:30 GMT", now), retry_after_s("soon", now)
    (120.0, 150.0, None)
    """
    if value is None or not (value := value.strip()):
        return None
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


class Refused(Exception):
    """The receiver refused the payload for good (a 4xx other than 429, a redirect)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` signed at ``timestamp``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: float = 300,
) -> bool:
    """Receiver side: a valid signature made within ``tolerance_s`` of ``now`` (replay guard)."""
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Leave a 3xx as the answer (an :class:`urllib.error.HTTPError`), never follow it."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


class WebhookSender:
    """Deliver JSON bodies to one URL, one attempt per :meth:`post`."""

    def __init__(self, url: str, secret: bytes, *, timeout_s: float = 5.0) -> None:
        self.url = url
        self.shown = shown_url(url, unreadable="the webhook URL (alerts.webhook_url)")
        self._secret = secret
        self._timeout = timeout_s

    def post(self, body: bytes, delivery_id: str) -> int:
        """POST ``body`` once; the 2xx status, or :class:`Transient` / :class:`Refused`."""
        ts = str(int(time.time()))
        req = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "twinflow-alerts",
                TIMESTAMP_HEADER: ts,
                SIGNATURE_HEADER: sign(self._secret, ts, body),
                IDEMPOTENCY_HEADER: delivery_id,
                DELIVERY_HEADER: delivery_id,
            },
        )
        try:
            with _opener.open(req, timeout=self._timeout) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                header = exc.headers.get("Retry-After") if exc.headers and exc.code in (429, 503) else None
                wait = retry_after_s(header)
                asked = f" (Retry-After: {header.strip()})" if wait is not None and header else ""
                raise Transient(f"HTTP {exc.code} from {self.shown}{asked}", exc.code, wait) from None
            if 300 <= exc.code < 400:
                to = shown_url(exc.headers.get("Location", "?")) if exc.headers else "?"
                raise Refused(
                    f"HTTP {exc.code} from {self.shown}: redirected to {to}; redirects are not followed"
                    " (the signed body would be lost), set alerts.webhook_url to the final URL",
                    exc.code,
                ) from None
            raise Refused(f"HTTP {exc.code} from {self.shown}: refused", exc.code) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            raise Transient(f"{self.shown}: {exc}") from None
        except http.client.HTTPException as exc:  # not HTTP (a wrong port), or a broken answer
            raise Transient(f"{self.shown}: not an HTTP answer ({type(exc).__name__}: {str(exc)[:80]})") from None
