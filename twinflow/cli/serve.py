"""``twinflow serve`` (the HTTP API and web view) and ``twinflow api token create|list|revoke``."""

from __future__ import annotations

import re

import typer
from rich.console import Console
from rich.table import Table

from twinflow.cli.support import err_console, settings_or_exit

api_app = typer.Typer(help="The HTTP API: bearer tokens.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens (stored hashed) mapped to policy subjects.", no_args_is_help=True)
api_app.add_typer(token_app, name="token")
console = Console()


def serve(
    host: str = typer.Option(None, help="Address to listen on (default api.host, 127.0.0.1)."),
    port: int = typer.Option(None, min=0, max=65535, help="Port (default api.port, 8080; 0 = any free port)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Server processes (each with its own event hub)."),
) -> None:
    """Serve the HTTP API (/api/v1, docs at /api/docs) and the web view (/) until SIGTERM/Ctrl-C."""
    import logging

    from connectors.stopping import check_stop, stop_on_signals

    stop_on_signals()  # from the start (uvicorn takes the signals over later): a stop during start-up is clean too
    import uvicorn

    from twinflow.api.app import create_app
    from twinflow.api.server import Server, serve_workers
    from twinflow.settings import ConfigError

    s = settings_or_exit()
    api = s.api
    if (api.tls_cert_file is None) != (api.tls_key_file is None):
        err_console.print("[red]api.tls_cert_file and api.tls_key_file go together (set both or neither)[/red]")
        raise typer.Exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(s, stop_on_signals())  # a stop while it waits for PostgreSQL or Kafka ends the start-up
    except ConfigError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    scheme = "https" if api.tls_cert_file else "http"
    options = {
        "host": host or api.host,
        "port": api.port if port is None else port,
        "ssl_certfile": str(api.tls_cert_file) if api.tls_cert_file else None,
        "ssl_keyfile": str(api.tls_key_file) if api.tls_key_file else None,
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": 3,
        "server_header": False,
        "h11_max_incomplete_event_size": 16 * 1024,  # request line + headers
    }
    logging.getLogger("twinflow.api").info(
        "serving on %s://%s:%s (docs at /api/docs)", scheme, options["host"], options["port"]
    )
    check_stop("starting the server")
    if workers > 1:  # each worker process builds its own app (and event hub) from the same settings
        serve_workers(uvicorn.Config("twinflow.api.app:app_from_settings", factory=True, workers=workers, **options))
    else:
        Server(uvicorn.Config(app, **options), app).run()


@token_app.command("create")
def token_create(subject: str = typer.Option(..., "--subject", help="Who the bearer is (a policy subject).")) -> None:
    """Create a token for SUBJECT; it is printed once (only its SHA-256 is stored)."""
    from twinflow.api.tokens import SUBJECT_PATTERN, TokenStore, tokens_path

    if not re.match(SUBJECT_PATTERN, subject):
        err_console.print(f"[red]--subject {subject!r}: letters, digits and ._@:- only[/red]")
        raise typer.Exit(2)
    path = tokens_path(settings_or_exit())
    store = TokenStore.load(path)
    token, entry = store.issue(subject)
    store.save(path)
    err_console.print(f"token {entry.id} for {subject} added to {path}; it is shown once:")
    print(token)


@token_app.command("list")
def token_list() -> None:
    """List tokens (id, subject, created; never the secrets)."""
    from twinflow.api.tokens import TokenStore, tokens_path

    path = tokens_path(settings_or_exit())
    table = Table("id", "subject", "created")
    for e in TokenStore.load(path).entries:
        table.add_row(e.id, e.subject, e.created)
    console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: str = typer.Argument(..., help="The token's id (see `twinflow api token list`).")) -> None:
    """Revoke a token (the server notices within a second)."""
    from twinflow.api.tokens import TokenStore, tokens_path

    path = tokens_path(settings_or_exit())
    store = TokenStore.load(path)
    if not store.revoke(token_id):
        err_console.print(f"[red]no token {token_id!r} in {path}[/red]")
        raise typer.Exit(1)
    store.save(path)
    console.print(f"revoked {token_id}")
