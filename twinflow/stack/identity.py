"""The local development identity: a subject for the local user, its key, and a dev policy.

``twinflow stack up`` writes, once, under ``<stack dir>/identity/`` (folder 0700):

* ``local.key``: an Ed25519 private key (0600) — the CLI signs desired requests with it;
* ``subjects.toml``: the local user (login name) with roles ``operator`` and ``engineer`` and
  that key's public key;
* ``policy.toml``: a development policy letting ``operator`` set any numeric parameter and any
  mode of any twin, take every alert action and control every twin's models (enough to operate the
  demo; production policies are written per plant).

A ``policy.toml`` written by an earlier version (no alert or model rule) is left as it is — a flow of
that earlier version may read the same file, and it would refuse ``alerts = [...]`` — and is read for
alert actions and model control as the current development policy, only while it is byte for byte
what that version wrote (:func:`read_as_current`); an edited one is the user's own policy.

Settings left unset (``security.subjects_file``, ``policy_file``, ``key_file``) default to these
files (:meth:`twinflow.settings.SecuritySettings.identity_from`); explicit settings always win.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from twinflow.settings import DEV_IDENTITY, Settings
from twinflow.stack.certs import write_secret

DEV_POLICY = """\
# Development policy written by `twinflow stack up` (docs/security.md). Not for production:
# write one per plant that names roles, twin types, sites, parameter ranges, modes and alert actions.
[[rule]]
name = "local development: operators operate every twin"
subject = { roles = "operator" }
modes = ["normal", "maintenance", "simulating"]
alerts = ["*"]
models = ["*"]
[rule.parameters]
"*" = { type = "number" }
"""
# What earlier versions of `twinflow stack up` wrote (before alert actions were authorized).
EARLIER_DEV_POLICIES = (
    """\
# Development policy written by `twinflow stack up` (docs/security.md). Not for production:
# write one per plant that names roles, twin types, sites, parameter ranges and modes.
[[rule]]
name = "local development: operators operate every twin"
subject = { roles = "operator" }
modes = ["normal", "maintenance", "simulating"]
[rule.parameters]
"*" = { type = "number" }
""",
)


def read_as_current(text: str) -> str:
    """The policy text to decide alert actions with: :data:`DEV_POLICY` for an unchanged earlier
    generated development policy, else ``text`` itself.

    >>> read_as_current(EARLIER_DEV_POLICIES[0]) == DEV_POLICY, read_as_current("# mine") == "# mine"
    (True, True)
    """
    return DEV_POLICY if text in EARLIER_DEV_POLICIES else text


def ensure_dev_identity(settings: Settings) -> Path:
    """Create the development identity once (existing files are kept); returns its folder."""
    from operators.security.request_auth import new_private_key, private_key_pem, public_key_text

    folder = settings.stack.dir / DEV_IDENTITY
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    key_file, subjects, policy = folder / "local.key", folder / "subjects.toml", folder / "policy.toml"
    if not key_file.exists() or not subjects.exists():
        key = new_private_key()
        write_secret(key_file, private_key_pem(key))
        user = os.environ.get("USER") or getpass.getuser()
        subjects.write_text(
            "# Subjects written by `twinflow stack up` (docs/security.md): the local user and its key.\n"
            f'[subject."{user}"]\nroles = ["operator", "engineer"]\npublic_keys = ["{public_key_text(key)}"]\n'
        )
    if not policy.exists():
        policy.write_text(DEV_POLICY)
    return folder
