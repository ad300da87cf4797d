"""POST JSON to a webhook with retries and an HMAC-SHA256 signature.

Headers sent with every request:

* ``X-Twinflow-Timestamp``: Unix seconds when the request was signed;
* ``X-Twinflow-Signature``: ``sha256=`` + hex HMAC-SHA256 of ``timestamp + "." + body``
  with the shared secret (receivers check it with :func:`verify`);
* ``X-Twinflow-Delivery``: a stable id of the payload (alert id and version) for deduplication,
  since a retry after a lost response delivers the same payload again.

Network errors, HTTP 429 and 5xx are retried with exponential backoff (connectors/retry.py);
other 4xx answers are permanent failures. Redirects are not followed (a client following a 301, 302
or 303 repeats a POST as a GET without its body: the alert would be lost while the receiver
answers 200): a 3xx is a permanent failure that names where it points.

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

from connectors.retry import retry

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twinflow-Signature"
TIMESTAMP_HEADER = "X-Twinflow-Timestamp"
DELIVERY_HEADER = "X-Twinflow-Delivery"


class Transient(Exception):
    """A failure worth retrying (network error, 429, 5xx)."""


class DeliveryFailed(Exception):
    """The receiver refused the payload, or every attempt failed."""


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
    """Deliver JSON bodies to one URL."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout_s: float = 5.0,
        attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 10.0,
    ) -> None:
        self.url = url
        self._secret = secret
        self._timeout = timeout_s
        self._attempts = attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self.delivered = 0
        self.failed = 0

    def _post_once(self, body: bytes, delivery_id: str) -> int:
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
                DELIVERY_HEADER: delivery_id,
            },
        )
        try:
            with _opener.open(req, timeout=self._timeout) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise Transient(f"HTTP {exc.code} from {self.url}") from None
            if 300 <= exc.code < 400:
                to = exc.headers.get("Location", "?") if exc.headers else "?"
                raise DeliveryFailed(
                    f"HTTP {exc.code} from {self.url}: redirected to {to}; redirects are not followed"
                    " (the signed body would be lost), set alerts.webhook_url to the final URL"
                ) from None
            raise DeliveryFailed(f"HTTP {exc.code} from {self.url}: refused") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise Transient(f"{self.url}: {exc}") from None
        except http.client.HTTPException as exc:  # not HTTP (a wrong port), or a broken answer
            raise Transient(f"{self.url}: not an HTTP answer ({type(exc).__name__}: {str(exc)[:80]})") from None

    def send(self, body: bytes, delivery_id: str) -> int:
        """POST ``body``; returns the HTTP status or raises :class:`DeliveryFailed`."""
        try:
            status = retry(
                lambda: self._post_once(body, delivery_id),
                retry_on=(Transient,),
                attempts=self._attempts,
                base_delay=self._base_delay,
                max_delay=self._max_delay,
                what=f"webhook delivery {delivery_id}",
            )
        except Transient as exc:
            self.failed += 1
            raise DeliveryFailed(f"gave up after {self._attempts} attempts: {exc}") from None
        except DeliveryFailed:
            self.failed += 1
            raise
        self.delivered += 1
        return status
