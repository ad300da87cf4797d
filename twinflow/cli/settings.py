"""``twinflow settings``: the settings in effect, and the reference of every setting."""

from __future__ import annotations

import os

import typer

from twinflow.cli.support import err_console, settings_or_exit

settings_app = typer.Typer(help="Configuration: the settings in effect, and every setting.", no_args_is_help=True)


@settings_app.command("show")
def show(
    section: str = typer.Argument(None, help="Only this section (e.g. kafka, flow, alerts)."),
) -> None:
    """Print the settings in effect as TOML (defaults, the file and TWINFLOW_* variables applied; secrets
    masked, URLs without user, password, query and fragment, unset values left out), with the file and
    the variables that set them."""
    import tomli_w

    from twinflow.settings import Settings, config_path
    from twinflow.settings_reference import effective

    s = settings_or_exit()
    if section is not None and section not in Settings.model_fields:
        err_console.print(f"[red]no section {section!r}: use one of {', '.join(Settings.model_fields)}[/red]")
        raise typer.Exit(2)
    path = config_path()
    sections = tuple(f"TWINFLOW_{name.upper()}__" for name in Settings.model_fields)
    variables = sorted(k for k in os.environ if k.upper().startswith(sections))  # those that set something
    print(f"# file: {path.resolve() if path else 'none (defaults; TWINFLOW_CONFIG or ./twinflow.toml)'}")
    print(f"# variables: {', '.join(variables) if variables else 'none'}")
    print("# secrets are shown as **********, URLs without user, password, query (?…) and fragment;")
    print("# the reference of every setting: twinflow settings reference")
    print(tomli_w.dumps(effective(s, section)), end="")


@settings_app.command("reference")
def reference() -> None:
    """Print every setting with its type, default, environment variable and meaning (Markdown; it is
    docs/configuration.md)."""
    from twinflow.settings_reference import reference_markdown

    print(reference_markdown(), end="")
