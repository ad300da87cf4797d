"""Alarm-system performance (ISA-18.2): the alarm rate per operator-hour and flood periods.

One query (``sql/queries/alarm_rate.sql``) for the CLI (``twinflow alerts metrics``) and the API
(``GET /api/v1/alerts/metrics``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from twinflow import queries


def alarm_rate(
    conninfo: str, since: datetime, until: datetime, operators: int, twins: list[str] | None = None
) -> dict[str, Any]:
    """Annunciated alarms, per operator-hour, the busiest 10 minutes per operator, flood periods."""
    with psycopg.connect(conninfo) as conn:
        (row,) = queries.run(conn, "alarm_rate", since=since, until=until, operators=operators, twins=twins)
    return {
        "since": since,
        "until": until,
        "operators": operators,
        "annunciated": int(row["annunciated"]),
        "per_operator_hour": float(row["per_operator_hour"]),
        "peak_10min_per_operator": float(row["peak_10min_per_operator"]),
        "flood_periods": int(row["flood_periods"]),
    }
