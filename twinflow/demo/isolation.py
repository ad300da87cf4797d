"""What keeps a demo run apart from a deployment on the same stack: a database of its own, MQTT
topics of its own, and a twin policy that lets the web view's setpoint form drive the plant.

Twin state is versioned per twin id: a pipeline that resumes from its own snapshot after a demo wrote
newer versions of the same twins into the same database would write version numbers that are taken
(the sink keeps the first of each). So the demo writes into ``<dbname>_demo``, emptied at its start.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg

from connectors.bridges.mapping.loading import load_mapping
from connectors.postgres.migrate import migrate
from twinflow.settings import Settings
from twinflow.stack.postgres import Postgres


class DemoDatabaseError(RuntimeError):
    """The demo's database could not be made ready (the message says how to fix it)."""


def demo_dbname(settings: Settings) -> str:
    """``twinflow`` → ``twinflow_demo``."""
    return f"{settings.postgres.dbname}_demo"


def fresh_demo_database(settings: Settings) -> str:
    """Drop and create the demo's database (owned by the application role) as the local stack's
    PostgreSQL superuser, then apply the migrations; returns its name. Where the superuser is not
    at hand, an existing demo database the application role can reach is migrated and used as it is."""
    name, pg = demo_dbname(settings), settings.postgres
    try:
        Postgres(settings).fresh_database(name)
        refused = ""
    except psycopg.Error as exc:
        refused = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    try:
        migrate(pg.conninfo(dbname=name), pg.timescaledb)
    except psycopg.Error as exc:
        why = refused or str(exc).strip().splitlines()[0]
        raise DemoDatabaseError(
            f"the demo runs in a database of its own, {name!r}, and could not make it ready ({why}): create it "
            f"(owner {pg.user}) or start the local stack with `twinflow stack up`"
        ) from None
    return name


def with_run_topics(text: str, run: str) -> str:
    r"""The mapping ``text`` with every MQTT ``topic``/``command_topic`` under ``demo-<run>/``: a deployment's
    bridge with a persistent session on the plant's topics does not collect the demo's readings.

    >>> print(with_run_topics('topic = "plant/p1/state"\ncommand_topic = "plant/p1/cmd"\nv = { topic = "p/v" }', "ab"))
    topic = "demo-ab/plant/p1/state"
    command_topic = "demo-ab/plant/p1/cmd"
    v = { topic = "demo-ab/p/v" }
    """
    return re.sub(r'(\b(?:command_)?topic\s*=\s*")', rf"\g<1>demo-{run}/", text)


def drivable_policy(mapping: Path) -> str:
    """``TWINFLOW_TWIN__POLICY`` that lets the twins drive their mapping's writable parameters
    (``digital_wins``, synchronized within 1 unit: the plant's setpoints are whole rpm, %, bar), each twin
    of its asset's type (the fleet's `type` filter); the built-in strategy (``physical_wins``) refuses
    every desired change."""
    assets = load_mapping(mapping).assets
    twins = {
        asset.twin_id: {
            "type": asset.type,
            "parameters": {
                name: {"strategy": "digital_wins", "tolerance": 1.0}
                for name in sorted(name for name, p in asset.params.items() if p.writable)
            },
        }
        for asset in assets
    }
    return json.dumps({"types": {asset.type: {} for asset in assets}, "twins": twins})
