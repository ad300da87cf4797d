"""The secure profile of the local stack: ``twinflow stack up --secure`` (docs/security.md).

Same services, same ports settings, but:

* **Kafka**: one SASL_SSL listener (SCRAM-SHA-512, TLS with required client certificates),
  the KRaft controller on mutual TLS, the StandardAuthorizer with deny-by-default; users
  ``admin`` (super user) and ``twinflow`` (ACLs on ``telemetry.*``/``twin.*`` topics and
  ``twinflow*`` groups) are created with ``kafka-storage format --add-scram``.
* **Mosquitto**: TLS only with client certificates, no anonymous access, a password file
  (hashed with ``mosquitto_passwd -U``) and topic ACLs: the bridge reads
  ``twinflow/+/telemetry``; a device user may only publish ``twinflow/<its name>/telemetry``.
* **PostgreSQL**: ``ssl = on``, ``hostssl … scram-sha-256 clientcert=verify-ca`` only, a random
  superuser password, and least-privilege login roles (``twinflow`` owns the schema,
  ``twinflow_ingest`` may only insert telemetry, ``twinflow_audit_writer`` may only append to
  the audit trail; the grants are in the migrations).

Everything lives under ``<stack dir>/secure`` (:mod:`twinflow.stack.secure.material`): the CA, the
server and client certificates, one password file per account (0600) and one client configuration
per client role (``twinflow.toml``, ``twin.toml``, ``operator.toml``, ``admin.toml``), which name the
secret *files* — no secret is inlined, printed or logged. Each service's secure variant is a module
of its own: :mod:`~twinflow.stack.secure.kafka` (with the ACLs), :mod:`~twinflow.stack.secure.mosquitto`,
:mod:`~twinflow.stack.secure.postgres`.
"""

from __future__ import annotations

from twinflow.settings import Settings
from twinflow.stack.secure.kafka import SecureKafka
from twinflow.stack.secure.material import Material
from twinflow.stack.secure.mosquitto import SecureMosquitto
from twinflow.stack.secure.postgres import SecurePostgres


def is_secure(settings: Settings) -> bool:
    """Whether the stack folder holds a secure profile (so down/status use the secure services)."""
    return Material(settings.stack.dir).exists()


def secure_services(settings: Settings) -> list:
    """Start order as for the plain stack (Kafka last)."""
    return [SecurePostgres(settings), SecureMosquitto(settings), SecureKafka(settings)]


def prepare(settings: Settings) -> Material:
    """Create certificates and passwords for ``settings.stack.dir`` (idempotent)."""
    m = Material(settings.stack.dir)
    m.ensure()
    return m
