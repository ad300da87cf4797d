"""Demo report: alerts raised against the faults the simulator injected, as a self-contained HTML.

Inputs: the database (``telemetry_1m``, ``anomaly_scores``, ``forecasts``, ``alerts``), a time
range and the simulator's **fault schedule** (ground truth), either

* JSON: ``{"faults": [{"twin_id": "pump-003", "fault": "bearing_wear",
  "onset": "2026-11-25T08:10:00Z", "end": "2026-11-25T08:25:00Z"}, ...]}``
  (a bare list of the same objects is accepted too), or
* CSV with the header ``twin_id,fault,onset,end``.

``end`` may be empty/null: the fault lasts to the end of the run.

Matching (:mod:`twinflow.demo.fault_scoring`, shared with the demo's summary and
``benchmarks/sim_detection.py``): an alert *detects* a fault of the same twin when it opens
between the onset and ``end + grace`` (its **delay** after the onset); a prediction (a
``forecast_breach`` or ``failure`` alert) opened within the prediction horizon (1 h) before the
onset *predicts* it (its **lead**), shown as such; every other alert — in particular one opened
before the onset — is a **false alarm**; faults neither detected nor predicted are **missed**.

Run it::

    python -m twinflow.demo.report --faults faults.json --since 2026-11-25T08:00Z --out report.html
"""

from __future__ import annotations

import argparse
import csv
import json
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

import psycopg

from twinflow.demo.fault_scoring import (  # noqa: F401 - re-exported: the report's public names
    DETECTING_KINDS,
    PREDICTION_HORIZON,
    AlertRow,
    Evaluation,
    Fault,
    FaultResult,
    evaluate,
)
from twinflow.demo.report_charts import (
    FAULT_COLOR,
    SEVERITY_COLOR,
    Bar,
    Window,
    forecast_chart,
    plotly_script,
    score_chart,
    series_chart,
    timeline_chart,
)


def _ts(text: str | None) -> datetime | None:
    if text is None or str(text).strip() in ("", "null", "None"):
        return None
    t = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone; write e.g. 2026-11-25T08:00:00Z")
    return t


def load_faults(path: Path) -> list[Fault]:
    """Read the fault schedule (JSON or CSV, see the module docs); errors name the file and row."""
    text = path.read_text()
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    elif path.suffix.lower() == ".jsonl":  # the simulator's ground-truth file, one fault per line
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        data = json.loads(text)
        rows = data["faults"] if isinstance(data, dict) else data
    faults = []
    for i, row in enumerate(rows, 1):
        try:
            onset = _ts(row["onset"])
            if onset is None:
                raise ValueError("onset is empty")
            faults.append(Fault(str(row["twin_id"]), str(row.get("fault") or "fault"), onset, _ts(row.get("end"))))
        except (KeyError, ValueError) as exc:
            raise ValueError(
                f"{path}: fault {i}: {exc}; each fault needs twin_id, fault, onset, end (RFC 3339; end may be empty)"
            ) from None
    return faults


# ---------------------------------------------------------------------------- data
def fetch_alerts(conn: psycopg.Connection, since: datetime, until: datetime, twins: list[str] | None) -> list[AlertRow]:
    rows = conn.execute(
        "SELECT alert_id, twin_id, kind, severity, state, opened_at, acked_at, resolved_at, summary"
        " FROM alerts"
        " WHERE opened_at >= %s AND opened_at < %s AND (%s::text[] IS NULL OR twin_id = ANY(%s::text[]))"
        " ORDER BY opened_at",
        (since, until, twins, twins),
    ).fetchall()
    return [AlertRow(*r) for r in rows]


def _twin_charts(
    conn: psycopg.Connection,
    twin: str,
    since: datetime,
    until: datetime,
    faults: list[Fault],
    alerts: list[AlertRow],
) -> list[str]:
    rng = (since, until)
    windows = [Window(f.onset, f.end or until, f"fault: {f.fault}") for f in faults]
    readings: dict[str, tuple[list, list]] = {}
    for sensor, ts, value in conn.execute(  # raw resolution
        "SELECT sensor, ts, value FROM telemetry WHERE twin_id = %s AND ts >= %s AND ts < %s ORDER BY sensor, ts",
        (twin, since, until),
    ):
        xs, ys = readings.setdefault(sensor, ([], []))
        xs.append(ts)
        ys.append(value)
    charts = [series_chart(sensor, xs, ys, windows, rng) for sensor, (xs, ys) in sorted(readings.items())]
    scores = conn.execute(
        "SELECT ts, score, threshold FROM anomaly_scores WHERE twin_id = %s"
        " AND twinflow_model_source(model) = 'twinflow' AND ts >= %s AND ts < %s ORDER BY ts",
        (twin, since, until),
    ).fetchall()
    if scores:
        charts.append(score_chart([r[0] for r in scores], [r[1] for r in scores], [r[2] for r in scores], windows, rng))
    fc = conn.execute(  # the latest forecast of each sensor
        "SELECT f.sensor, f.ts, f.target_ts, f.predicted, coalesce(f.lower, f.predicted),"
        " coalesce(f.upper, f.predicted), f.limit_value"
        " FROM forecasts f JOIN (SELECT sensor, max(ts) AS ts FROM forecasts WHERE twin_id = %s AND ts >= %s"
        "   AND ts < %s AND twinflow_model_source(model) = 'twinflow' GROUP BY sensor) latest"
        " ON f.sensor = latest.sensor AND f.ts = latest.ts"
        " WHERE f.twin_id = %s AND twinflow_model_source(f.model) = 'twinflow' ORDER BY f.sensor, f.target_ts",
        (twin, since, until, twin),
    ).fetchall()
    for sensor in sorted({r[0] for r in fc}):
        rows = [r for r in fc if r[0] == sensor]
        xs, ys = readings.get(sensor, ([], []))
        recent = [i for i, t in enumerate(xs) if t >= rows[0][1] - (until - since) / 4]
        charts.append(
            forecast_chart(
                sensor,
                rows[0][1],
                [r[2] for r in rows],
                [r[3] for r in rows],
                [r[4] for r in rows],
                [r[5] for r in rows],
                rows[0][6],
                ([xs[i] for i in recent], [ys[i] for i in recent]),
            )
        )
    bars = [Bar(f"fault: {f.fault}", f.onset, f.end or until, FAULT_COLOR, f.fault) for f in faults]
    bars += [
        Bar(
            f"{a.kind} {a.opened_at:%H:%M:%S}",
            a.opened_at,
            a.resolved_at or until,
            SEVERITY_COLOR.get(a.severity, "#d62728"),
            f"{a.kind} ({a.severity}, {a.state}): {a.summary}",
        )
        for a in alerts
    ]
    charts.append(timeline_chart(bars, rng))
    return charts


def _fmt_lead(s: float | None) -> str:
    if s is None:
        return "–"
    sign = "" if s >= 0 else "−"
    s = abs(s)
    return f"{sign}{s / 3600:.1f} h" if s >= 7200 else f"{sign}{s / 60:.1f} min"


def render(
    conn: psycopg.Connection,
    faults: list[Fault],
    since: datetime,
    until: datetime,
    twins: list[str] | None = None,
    max_twins: int = 20,
) -> tuple[str, Evaluation]:
    """The HTML report and the evaluation behind it."""
    alerts = fetch_alerts(conn, since, until, twins)
    ev = evaluate([f for f in faults if twins is None or f.twin_id in twins], alerts, until=until)
    shown = list(dict.fromkeys([*(f.fault.twin_id for f in ev.results), *(a.twin_id for a in alerts)]))
    shown = shown[:max_twins] if twins is None else twins
    s = ev.summary
    css = (
        "body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;"
        "margin:8px 0 20px}td,th{border:1px solid #ddd;padding:4px 8px;font-size:13px;text-align:left}"
        "th{background:#f4f4f4}.ok{color:#2ca02c}.bad{color:#d62728}section{margin-top:28px}"
        ".charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:8px}"
    )
    html = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>twinflow report {since:%Y-%m-%d %H:%M}–{until:%H:%M} UTC</title>",
        f"<style>{css}</style>{plotly_script()}</head><body><h1>twinflow: alerts vs. injected faults</h1>",
        f"<p>{since:%Y-%m-%d %H:%M} – {until:%Y-%m-%d %H:%M} UTC</p>",
        "<table id='summary'><tr>"
        + "".join(f"<th>{escape(k)}</th>" for k in s)
        + "</tr><tr>"
        + "".join(
            f"<td>{_fmt_lead(v) if k in ('median_lead_s', 'median_delay_s') else ('–' if v is None else v)}</td>"
            for k, v in s.items()
        )
        + "</tr></table>",
        "<h2>Faults</h2><table id='faults'><tr><th>twin</th><th>fault</th><th>onset</th><th>end</th>"
        "<th>detected</th><th>delay after onset</th><th>predicted (lead before onset)</th><th>alerts</th></tr>",
    ]
    for r in ev.results:
        f = r.fault
        html.append(
            f"<tr><td>{escape(f.twin_id)}</td><td>{escape(f.fault)}</td><td>{f.onset:%H:%M:%S}</td>"
            f"<td>{f'{f.end:%H:%M:%S}' if f.end else 'open'}</td>"
            f"<td class='{'ok' if r.detected else 'bad'}'>{'yes' if r.detected else 'missed'}</td>"
            f"<td>{_fmt_lead(r.delay_s)}</td><td>{_fmt_lead(r.lead_s)}</td>"
            f"<td>{escape(', '.join(f'{a.kind}/{a.severity}' for a in [*r.predictions, *r.alerts]))}</td></tr>"
        )
    html.append(
        "</table><p>Detected: an alert opened after the onset (delay). Predicted: a forecast-breach or "
        "failure alert up to 1 h before the onset (lead). Any other alert, including one opened before "
        "the onset, is a false alarm.</p>"
        "<h2>False alarms</h2><table id='false-alarms'><tr><th>twin</th><th>kind</th>"
        "<th>severity</th><th>opened</th><th>summary</th></tr>"
    )
    for a in ev.false_alarms:
        html.append(
            f"<tr><td>{escape(a.twin_id)}</td><td>{a.kind}</td><td>{a.severity}</td>"
            f"<td>{a.opened_at:%H:%M:%S}</td><td>{escape(a.summary)}</td></tr>"
        )
    html.append("</table>")
    for twin in shown:
        tf = [r.fault for r in ev.results if r.fault.twin_id == twin]
        ta = [a for a in alerts if a.twin_id == twin]
        html.append(f"<section class='twin' id='twin-{escape(twin)}'><h2>{escape(twin)}</h2><div class='charts'>")
        html += _twin_charts(conn, twin, since, until, tf, ta)
        html.append("</div></section>")
    html.append("</body></html>")
    return "\n".join(html), ev


def write_report(
    conninfo: str,
    faults_path: Path,
    since: datetime,
    until: datetime,
    out: Path,
    twins: list[str] | None = None,
) -> Evaluation:
    """Render the report to ``out``; returns the evaluation (for a console summary)."""
    faults = load_faults(faults_path)
    with psycopg.connect(conninfo) as conn:
        html, ev = render(conn, faults, since, until, twins)
    out.write_text(html)
    return ev


def main(argv: list[str] | None = None) -> int:
    from twinflow.settings import load_settings

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--faults", type=Path, required=True, help="fault schedule (JSON or CSV)")
    p.add_argument("--since", type=_ts, help="start (RFC 3339); default: 2 hours before --until")
    p.add_argument("--until", type=_ts, help="end (RFC 3339); default: now")
    p.add_argument("--twin", action="append", help="only these twins (repeatable)")
    p.add_argument("--out", type=Path, default=Path("twinflow-report.html"))
    a = p.parse_args(argv)
    until = a.until or datetime.now(UTC)
    since = a.since or until - timedelta(hours=2)
    ev = write_report(load_settings().postgres.conninfo(), a.faults, since, until, a.out, a.twin)
    print(json.dumps(ev.summary, default=str))
    print(f"report: {a.out.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
