"""``twinflow audit verify``, ``twinflow policy check`` and ``twinflow key new``: the audit chain, the
policy file, and signing keys of subjects (docs/security.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from twinflow.cli.support import conninfo_option

audit_app = typer.Typer(help="The hash-chained audit trail of desired-state changes.", no_args_is_help=True)
policy_app = typer.Typer(help="The policy file (desired-state changes, alert actions).", no_args_is_help=True)
key_app = typer.Typer(help="Ed25519 signing keys of subjects (people, services).", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


@audit_app.command("verify")
def verify(
    conninfo: str = typer.Option(
        None, help="libpq connection string (default: from settings).", callback=conninfo_option
    ),
    expect_head: str = typer.Option(
        None, help="The head hash recorded earlier elsewhere; also detects removal of the newest rows."
    ),
) -> None:
    """Recompute the chain; exit 1 and name the first broken row if it was tampered with."""
    import psycopg

    from connectors.postgres.audit import verify as verify_chain
    from twinflow.cli.support import settings_or_exit

    dsn = conninfo or settings_or_exit().postgres.conninfo()
    try:
        with psycopg.connect(dsn) as conn:
            result = verify_chain(conn)
    except psycopg.Error as exc:
        err_console.print(f"[red]cannot read desired_audit: {exc}[/red]")
        raise typer.Exit(2) from None
    if result.broken is not None:
        err_console.print(f"[red]audit chain BROKEN at row {result.broken.row_id}: {result.broken.problem}[/red]")
        raise typer.Exit(1)
    if expect_head and expect_head != result.head:
        err_console.print(
            f"[red]audit chain head is {result.head}, expected {expect_head}: rows were removed or added[/red]"
        )
        raise typer.Exit(1)
    console.print(f"audit chain intact: {result.rows} rows, head {result.head}")


@policy_app.command("check")
def check(path: Annotated[Path, typer.Argument(help="Policy TOML file.")]) -> None:
    """Validate a policy file; errors name the file and the field."""
    from connectors.config.security_files import load_policy
    from twinflow.cli.support import print_config_error
    from twinflow.settings import ConfigError

    try:
        policy = load_policy(path)
    except ConfigError as exc:
        print_config_error(exc)
        raise typer.Exit(2) from None
    n = len(policy.rules)
    console.print(f"{path}: {n} rule{'' if n == 1 else 's'} OK")
    from operators.security.authorization import ACTION_KINDS
    from twinflow.authority import load_action_policy

    for kind, what in ACTION_KINDS.items():
        if policy.grants_any(kind):
            continue
        if load_action_policy(path).grants_any(kind):
            console.print(
                f"note: the development policy of an earlier `twinflow stack up`, unchanged: {what} is "
                f"decided with the current one (operators may take every action of it)"
            )
        else:
            console.print(f"note: no rule grants {what} ({kind} = [...]): all of it is denied (no_matching_rule)")


@key_app.command("new")
def key_new(
    path: Annotated[Path, typer.Argument(help="Where to write the private key (PEM, created 0600).")],
    subject: str = typer.Option("SUBJECT", "--subject", help="The subject id to print in the example entry."),
) -> None:
    """Create a private key; print the public key as an entry for the subjects file."""
    import json
    import os
    import re

    from operators.security.request_auth import new_private_key, private_key_pem, public_key_text

    if not subject.strip():
        err_console.print("[red]--subject: name the subject (a person or service), e.g. --subject ann[/red]")
        raise typer.Exit(2)
    if path.exists():
        err_console.print(f"[red]{path} exists: choose another file (keys are never overwritten)[/red]")
        raise typer.Exit(2)
    key = new_private_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_key_pem(key))
    console.print(f"private key: {path} (set security.key_file to it)")
    # A subject such as ann@plant or "Ann Smith" is a quoted key (a JSON string is a TOML basic string):
    # the entry is TOML as printed.
    name = subject if re.fullmatch(r"[A-Za-z0-9_-]+", subject) else json.dumps(subject)
    entry = f'[subject.{name}]\nroles = ["operator"]\npublic_keys = ["{public_key_text(key)}"]'
    console.print(entry, markup=False, highlight=False, soft_wrap=True)
