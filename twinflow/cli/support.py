"""What every `twinflow` sub-command shares: the error console, settings, publishing one record."""

from __future__ import annotations

import logging

import typer
from rich.console import Console
from rich.markup import escape

from twinflow.settings import ConfigError, Settings, load_settings

err_console = Console(stderr=True)


def setup_logging(verbose: bool = False) -> None:
    """Log lines with time, level and logger on stderr (DEBUG with ``verbose``)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def print_config_error(exc: Exception) -> None:
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
    from connectors.kafka.clients import make_producer, produce_acknowledged

    failure = produce_acknowledged(make_producer(s), topic, key, value, timeout)
    if failure is not None:
        err_console.print(f"[red]{what} for {key} not acknowledged by Kafka on {topic}: {failure}; try again[/red]")
        raise typer.Exit(1)
