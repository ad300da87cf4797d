"""Expand Grafana's PostgreSQL macros and template variables, so dashboard SQL runs anywhere.

Grafana cannot run in the test environment; this module turns a panel's ``rawSql`` into the
SQL Grafana would send, for a given time range, interval and variable values.

>>> from datetime import datetime, UTC
>>> ctx = Context(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), interval_s=300,
...               variables={"twin": ["p1"], "sensor": ["rpm", "temp"]})
>>> print(expand("SELECT $__timeGroupAlias(ts, $__interval), v FROM t WHERE $__timeFilter(ts) "
...              "AND twin_id = '$twin' AND sensor IN (${sensor:sqlstring})", ctx))
SELECT floor(extract(epoch from ts)/300)*300 AS "time", v FROM t WHERE ts BETWEEN '2026-01-01T00:00:00Z' \
AND '2026-01-02T00:00:00Z' AND twin_id = 'p1' AND sensor IN ('rpm','temp')
>>> parse_interval("'1h'"), parse_interval("5m"), parse_interval("$__interval", ctx)
(3600.0, 300.0, 300.0)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_MACRO = re.compile(r"\$__(\w+)\(")
_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)")


@dataclass
class Context:
    """Time range, interval and variable values of one dashboard render."""

    time_from: datetime
    time_to: datetime
    interval_s: float = 60.0
    variables: dict[str, list[str]] = field(default_factory=dict)
    timescaledb: bool = False  # Grafana's time_bucket() variant of $__timeGroup

    @property
    def interval(self) -> str:
        s = self.interval_s
        for unit in ("d", "h", "m"):
            if s >= _UNITS[unit] and s % _UNITS[unit] == 0:
                return f"{int(s // _UNITS[unit])}{unit}"
        return f"{s:g}s" if s >= 1 else f"{int(s * 1000)}ms"


def parse_interval(text: str, ctx: Context | None = None) -> float:
    """Seconds of a Grafana interval ('5m', "'1h'", '$__interval')."""
    text = text.strip().strip("'\"")
    if text in ("$__interval", "${__interval}") and ctx is not None:
        return float(ctx.interval_s)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", text)
    if m is None:
        raise ValueError(f"not a Grafana interval: {text!r} (use e.g. 30s, 5m, 1h)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_relative(text: str, now: datetime) -> datetime:
    """Grafana's relative times: 'now', 'now-6h', 'now+2h' (and ISO timestamps)."""
    m = re.fullmatch(r"now(?:([+-])(\d+)(s|m|h|d|w))?", text)
    if m is None:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    if m.group(1) is None:
        return now
    delta = timedelta(seconds=int(m.group(2)) * _UNITS[m.group(3)])
    return now + delta if m.group(1) == "+" else now - delta


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _split_args(sql: str, start: int) -> tuple[list[str], int]:
    """Arguments of a macro call whose '(' is at ``start - 1``; returns (args, index after ')')."""
    depth, args, cur, i = 0, [], [], start
    while i < len(sql):
        ch = sql[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                args.append("".join(cur).strip())
                return [a for a in args if a != ""] if args != [""] else [], i + 1
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    raise ValueError(f"unbalanced parentheses in macro call: {sql[start - 20 : start + 40]!r}")


def _time_group(col: str, interval: str, ctx: Context) -> str:
    secs = parse_interval(interval, ctx)
    if ctx.timescaledb:
        return f"time_bucket('{secs:g}s', {col})"
    return f"floor(extract(epoch from {col})/{secs:g})*{secs:g}"


def _macro(name: str, args: list[str], ctx: Context) -> str:
    f, t = _iso(ctx.time_from), _iso(ctx.time_to)
    match name:
        case "time":
            return f'{args[0]} AS "time"'
        case "timeEpoch":
            return f'extract(epoch from {args[0]}) AS "time"'
        case "timeFilter":
            return f"{args[0]} BETWEEN '{f}' AND '{t}'"
        case "timeFrom":
            return f"'{f}'"
        case "timeTo":
            return f"'{t}'"
        case "timeGroup":
            return _time_group(args[0], args[1], ctx)
        case "timeGroupAlias":
            return _time_group(args[0], args[1], ctx) + ' AS "time"'
        case "unixEpochFilter":
            lo, hi = int(ctx.time_from.timestamp()), int(ctx.time_to.timestamp())
            return f"{args[0]} >= {lo} AND {args[0]} <= {hi}"
        case "unixEpochFrom":
            return str(int(ctx.time_from.timestamp()))
        case "unixEpochTo":
            return str(int(ctx.time_to.timestamp()))
    raise ValueError(f"unsupported Grafana macro $__{name}")


def _format(values: list[str], fmt: str | None, quoted_context: bool) -> str:
    if fmt in ("sqlstring", "singlequote"):
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt == "csv" or fmt == "raw":
        return ",".join(values)
    if quoted_context:  # '$twin' — Grafana leaves quoting to the query
        return ",".join(values)
    # default SQL formatting of a variable: quoted when multi-value
    if len(values) == 1:
        return values[0]
    return ",".join("'" + v.replace("'", "''") + "'" for v in values)


def expand(sql: str, ctx: Context) -> str:
    """The SQL Grafana would run for ``ctx`` (macros, $__interval and variables expanded)."""
    sql = sql.replace("$__interval_ms", str(int(ctx.interval_s * 1000)))
    sql = sql.replace("${__interval}", ctx.interval).replace("$__interval", ctx.interval)
    out, pos = [], 0
    for m in _MACRO.finditer(sql):
        if m.start() < pos:
            continue
        args, end = _split_args(sql, m.end())
        out.append(sql[pos : m.start()])
        out.append(_macro(m.group(1), args, ctx))
        pos = end
    out.append(sql[pos:])
    sql = "".join(out)

    def var(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3) or m.group(4)
        if name not in ctx.variables:
            return m.group(0)
        quoted = m.start() > 0 and sql[m.start() - 1] == "'"
        return _format(ctx.variables[name], m.group(2), quoted)

    return _VAR.sub(var, sql)


# ---------------------------------------------------------------------------- dashboards
@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    raw_sql: str


def load_dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panel_queries(dashboard: dict[str, Any]) -> Iterator[PanelQuery]:
    """Every SQL target of every panel (rows' nested panels too) and of the annotations."""

    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))

    title = dashboard.get("title", "?")
    for p in walk(dashboard.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("rawSql"):
                yield PanelQuery(title, p.get("title", "?"), t.get("refId", "A"), t["rawSql"])
    for a in dashboard.get("annotations", {}).get("list", []):
        sql = a.get("rawQuery") or (a.get("target") or {}).get("rawSql")
        if sql:
            yield PanelQuery(title, f"annotation: {a.get('name', '?')}", "annotation", sql)


def variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return list(dashboard.get("templating", {}).get("list", []))


def current_values(var: dict[str, Any]) -> list[str]:
    """A variable's saved current value(s) as a list."""
    value = (var.get("current") or {}).get("value")
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def time_range(dashboard: dict[str, Any], now: datetime) -> tuple[datetime, datetime]:
    t = dashboard.get("time") or {"from": "now-6h", "to": "now"}
    return parse_relative(t["from"], now), parse_relative(t["to"], now)
