"""Settings as errors, logs and ``twinflow settings show`` show them: without the credentials they carry.

A URL may carry a user and password (``https://bot:pw@host/…``) and a receiver's token often rides in
its query: :func:`shown_url` leaves all three out (and the fragment). A setting typed :data:`ShownUrl`
is dumped that way with the context :data:`SHOWN` (``model_dump(context=SHOWN)``, what ``settings
show`` prints); every other dump and its value in the program are the whole URL (a dump handed to a
child process must work). :func:`shown_properties` does the same for free-form client properties
(``kafka.extra``).

>>> shown_url("https://bot:pw@hooks.example.com:8443/in/alerts?token=s3cret#x")
'https://hooks.example.com:8443/in/alerts?…'
>>> shown_url("http://[::1]:8080/in"), shown_url("http://host:99999/in")
('http://[::1]:8080/in', '(a URL that cannot be read)')
>>> from pydantic import BaseModel
>>> class Alerts(BaseModel):
...     webhook_url: ShownUrl | None = None
>>> a = Alerts(webhook_url="https://bot:pw@h/in?token=s3cret")
>>> a.model_dump(mode="json", context=SHOWN), a.model_dump_json()
({'webhook_url': 'https://h/in?…'}, '{"webhook_url":"https://bot:pw@h/in?token=s3cret"}')
>>> shown_properties({"sasl.password": "pw", "sasl.oauthbearer.token.endpoint.url": "https://u:p@idp/t", "acks": "all"})
{'sasl.password': '**********', 'sasl.oauthbearer.token.endpoint.url': 'https://idp/t', 'acks': 'all'}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from pydantic import PlainSerializer, SecretStr, SerializationInfo

SHOWN = {"shown": True}  # the dump's context that shows settings as :func:`shown_url` and :func:`shown_properties` do
MASKED = str(SecretStr("secret"))  # how a secret is shown: pydantic's mask, **********
# Parts of a client property's name that make its value a secret (librdkafka: sasl.password,
# ssl.key.password, sasl.oauthbearer.client.secret, ssl.key.pem, …).
SECRET_NAMES = ("password", "secret", "passphrase", "key.pem")


def shown_url(url: str, unreadable: str = "(a URL that cannot be read)") -> str:
    """``url`` without user, password, query and fragment (``?…`` says a query was left out);
    ``unreadable`` in its place when it cannot be split into those parts."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
    except ValueError:  # not a URL urllib can split (a request to it fails with its own error)
        return unreadable
    return urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", ""))


def showing(info: SerializationInfo) -> bool:
    """Whether a dump is one that shows settings (its context is :data:`SHOWN`)."""
    return isinstance(info.context, dict) and info.context.get("shown") is True


def _shown_setting(url: str) -> str:
    return shown_url(url, unreadable=MASKED)


def _dumped_url(url: str, info: SerializationInfo) -> str:
    return _shown_setting(url) if showing(info) else url


# A URL setting that may carry credentials: the whole URL, but :func:`shown_url` in a dump with :data:`SHOWN`.
ShownUrl = Annotated[str, PlainSerializer(_dumped_url)]


def shown_properties(properties: Mapping[str, str]) -> dict[str, str]:
    """Client properties as shown: a secret's value (its name has a part of :data:`SECRET_NAMES`)
    masked, a URL's (its name ends in ``.url``) as :func:`shown_url` shows it, the others whole."""
    out = {}
    for name, value in properties.items():
        low = name.lower()
        if any(part in low for part in SECRET_NAMES):
            out[name] = MASKED
        elif low.endswith(".url"):
            out[name] = _shown_setting(value)
        else:
            out[name] = value
    return out
