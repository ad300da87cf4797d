"""What every `twinflow` sub-command shares: the error console, settings, publishing one record."""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

from twinflow.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from twinflow.authority import ActionRefused

err_console = Console(stderr=True)


def setup_logging(verbose: bool = False) -> None:
    """Log lines with time, level and logger on stderr (DEBUG with ``verbose``)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def print_config_error(exc: Exception | str) -> None:
    """A configuration mistake on stderr as written: "[ml]" is not markup, long lines are not wrapped."""
    err_console.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True, highlight=False)


def settings_or_exit() -> Settings:
    """The settings, or the configuration error (file, field and fix) and exit code 2."""
    try:
        return load_settings()
    except ConfigError as exc:
        print_config_error(exc)
        raise typer.Exit(2) from None


def publish_or_exit(s: Settings, topic: str, key: str, value: bytes, what: str, timeout: float = 30.0) -> None:
    """Produce one record keyed by ``key``; exit 1 with ``what`` named unless Kafka acknowledges it."""
    from connectors.kafka.clients import make_producer, produce_acknowledged, quiet_logger

    producer = make_producer(s, logger=quiet_logger())  # the outcome is this command's one line
    failure = produce_acknowledged(producer, topic, key, value, timeout)
    if failure is not None:
        err_console.print(f"[red]{what} for {key} not acknowledged by Kafka on {topic}: {failure}; try again[/red]")
        raise typer.Exit(1)


# Files a command was given (or writes) that are not there, are directories, or may not be touched.
PATH_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


def not_utf8_argument(argv: list[str]) -> str | None:
    """The message for the first command-line argument that is not UTF-8 text (Python keeps such bytes
    as lone surrogates, which no database, Kafka record or file name written by twinflow can hold).

    >>> not_utf8_argument(["twin", "show", "pump-001"]) is None
    True
    >>> print(not_utf8_argument(["twin", "show", b"pump\\xff".decode("utf-8", "surrogateescape")]))
    argument 3 (b'pump\\xff') is not UTF-8 text: type it again in UTF-8
    """
    for i, arg in enumerate(argv, 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raw = arg.encode("utf-8", "surrogateescape")
            return f"argument {i} ({raw!r}) is not UTF-8 text: type it again in UTF-8"
    return None


def failure_message(exc: BaseException) -> tuple[str, int] | None:
    """What to tell a person about an exception no command handled, and the exit code; ``None`` for a bug
    (its traceback is shown). A flow that stopped on such a failure is told the same way: the exception
    Bytewax raises names its step, the failure is its direct cause (``raise … from``, followed; an
    exception raised while handling another is not: that one may be a bug).

    A service that cannot be reached or refuses the login (PostgreSQL, Kafka) is named with the settings
    that point at it (exit code 1: nothing was done, try again once it answers), as is a login role that
    lacks a right (exit code 1); a path that cannot be read or written is named with the reason (exit
    code 2: fix the path).

    >>> from psycopg.errors import InsufficientPrivilege
    >>> print(failure_message(InsufficientPrivilege("permission denied for table alerts"))[0][:80])
    PostgreSQL refused: permission denied for table alerts. The login role (postgres
    >>> stopped = RuntimeError("error snapshotting StatefulSink")  # as Bytewax stops a flow
    >>> stopped.__cause__ = InsufficientPrivilege("permission denied for table alerts")
    >>> failure_message(stopped)[1], failure_message(RuntimeError("a bug")) is None
    (1, True)
    """
    if exc.__cause__ is not None:  # the flow's step → the sink's background write → what failed
        known = failure_message(exc.__cause__)
        if known is not None:
            return known
    if isinstance(exc, PATH_ERRORS):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}; fix the path", 2
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):
        detail = " ".join(str(exc).split())
        return (
            f"PostgreSQL cannot be used: {detail}. Is it running (`twinflow stack status`)? Its address and "
            "login are the [postgres] settings (host, port, dbname, user, password; `twinflow settings show "
            "postgres`, TWINFLOW_POSTGRES__HOST, TWINFLOW_POSTGRES__PORT …)",
            1,
        )
    if psycopg is not None and isinstance(exc, psycopg.errors.InsufficientPrivilege):
        detail = " ".join(str(exc).split())
        return (
            f"PostgreSQL refused: {detail}. The login role (postgres.user, `twinflow settings show postgres`) "
            "lacks this right: use a role that has it, or apply the migrations that grant it (`twinflow db "
            "migrate` as the database's owner; docs/security.md lists each role's rights)",
            1,
        )
    source = sys.modules.get("connectors.kafka.source")
    if source is not None and isinstance(exc, source.MissingTopics):
        return str(exc), 1
    sink = sys.modules.get("connectors.kafka.sink")
    if sink is not None and isinstance(exc, sink.UndeliveredError):
        return str(exc), 1
    kafka = sys.modules.get("confluent_kafka")
    if kafka is not None and isinstance(exc, kafka.KafkaException):
        err = exc.args[0] if exc.args else None
        detail = err.str() if hasattr(err, "str") else str(exc)
        servers = _setting("kafka", "bootstrap_servers")
        return (
            f"Kafka did not answer ({servers}): {detail}. Is it running (`twinflow stack status`)? Its address "
            "is kafka.bootstrap_servers (TWINFLOW_KAFKA__BOOTSTRAP_SERVERS; `twinflow settings show kafka`)",
            1,
        )
    return None


def _setting(section: str, name: str) -> str:
    """A setting's value for a message (``?`` when the settings cannot be read)."""
    try:
        return str(getattr(getattr(load_settings(), section), name))
    except Exception:  # the message is about another failure: never fail on this one
        return os.environ.get(f"TWINFLOW_{section.upper()}__{name.upper()}", "?")


def conninfo_option(value: str | None) -> str | None:
    """Callback of a ``--conninfo`` option: a libpq connection string that libpq can parse, or a usage
    error (exit code 2) with libpq's reason."""
    if value is None:
        return None
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(value)
    except ProgrammingError as exc:
        raise typer.BadParameter(f"{exc}; write key=value pairs, e.g. 'host=db port=5432 dbname=twinflow'") from None
    return value


def finite(value: float | None) -> float | None:
    """Callback of a number option: ``nan`` and ``inf`` are usage errors (exit code 2), not a wait that
    never ends or a number that overflows later.

    >>> finite(2.5), finite(None)
    (2.5, None)
    """
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def cli_subject(s: Settings) -> str:
    """Who this CLI acts as (:func:`twinflow.desired_client.identity`); exit 2 with the reason if it cannot
    be told."""
    from twinflow.desired_client import RequestError, identity

    try:
        return identity(s)
    except RequestError as exc:
        err_console.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None


def refused(exc: ActionRefused, hint: str = "") -> typer.Exit:
    """Print an :class:`~twinflow.authority.ActionRefused` (and ``hint``); the exit: 3 denied by the policy,
    1 no such alert, not possible in its state or not auditable (503), 2 a mistake in the request."""
    err_console.print(f"{exc.detail}{hint}", style="red", markup=False, highlight=False)
    return typer.Exit(3 if exc.status == 403 else 1 if exc.status in (404, 409, 503) else 2)
