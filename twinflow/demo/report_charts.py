"""The demo report's charts, drawn with Plotly (the web view's library; plotly.js is embedded once
in the HTML, so the report opens offline).

Per twin: every sensor at raw resolution with the fault windows shaded (one chart per sensor: own
scale), the anomaly score with its threshold, one chart per forecast sensor with its prediction
interval and limit, and a timeline of faults and alerts.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> html = series_chart("temp_c", [t0, t0 + timedelta(seconds=1)], [60.0, 61.0], [], (t0, t0 + timedelta(seconds=2)))
>>> 'data-chart="sensor"' in html and 'data-traces="1"' in html
True
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape

import plotly.graph_objects as go
import plotly.io as pio

SEVERITY_COLOR = {"critical": "#d62728", "major": "#ff7f0e", "minor": "#bcbd22"}
FAULT_COLOR = "#7f7f7f"
GL_ABOVE = 5000  # points per trace beyond which WebGL draws the line


@dataclass(frozen=True)
class Window:
    """A shaded time window (an injected fault)."""

    start: datetime
    end: datetime
    label: str


def plotly_script() -> str:
    """plotly.js inline, once per report."""
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def _layout(fig: go.Figure, title: str, height: int, t_range: tuple[datetime, datetime] | None, y_title: str) -> None:
    fig.update_layout(
        title={"text": escape(title), "font": {"size": 14}},
        height=height,
        margin={"l": 70, "r": 20, "t": 50, "b": 40},
        template="plotly_white",
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.0, "yanchor": "bottom"},
        hovermode="x unified",
    )
    fig.update_xaxes(type="date", range=list(t_range) if t_range else None)
    fig.update_yaxes(title_text=y_title, automargin=True, tickformat="~g")


def _shade(fig: go.Figure, windows: list[Window]) -> None:
    for w in windows:
        fig.add_vrect(
            x0=w.start,
            x1=w.end,
            fillcolor=FAULT_COLOR,
            opacity=0.15,
            line_width=0,
            annotation_text=escape(w.label),
            annotation_position="top left",
            annotation_font_size=10,
        )


def _html(fig: go.Figure, kind: str) -> str:
    body = pio.to_html(fig, include_plotlyjs=False, full_html=False, config={"displaylogo": False, "responsive": True})
    return f'<div class="chart" data-chart="{kind}" data-traces="{len(fig.data)}">{body}</div>'


def _line(name: str, x: list, y: list, **kw) -> go.Scatter | go.Scattergl:
    cls = go.Scattergl if len(x) > GL_ABOVE else go.Scatter
    return cls(name=name, x=x, y=y, mode="lines", **kw)


def series_chart(
    sensor: str, ts: list[datetime], values: list[float], windows: list[Window], t_range: tuple[datetime, datetime]
) -> str:
    """One sensor at raw resolution, fault windows shaded."""
    fig = go.Figure([_line(sensor, ts, values, line={"width": 1.2, "color": "#1f77b4"})])
    _shade(fig, windows)
    _layout(fig, f"{sensor} ({len(values):,} readings)", 230, t_range, sensor)
    return _html(fig, "sensor")


def score_chart(
    ts: list[datetime], scores: list[float], thresholds: list[float], windows: list[Window], t_range
) -> str:
    """The anomaly score and its threshold (scores in [0, 1] are shown on that scale)."""
    fig = go.Figure(
        [
            _line("anomaly score", ts, scores, line={"width": 1.2, "color": "#d62728"}),
            _line("threshold", ts, thresholds, line={"width": 1.5, "color": "#444", "dash": "dash"}),
        ]
    )
    _shade(fig, windows)
    _layout(fig, "anomaly score", 230, t_range, "score")
    top = max([*scores, *thresholds], default=1.0)
    fig.update_yaxes(range=[0, 1.02] if top <= 1.0 else [0, top * 1.05])
    return _html(fig, "score")


def forecast_chart(
    sensor: str,
    made_at: datetime,
    target: list[datetime],
    predicted: list[float],
    lower: list[float],
    upper: list[float],
    limit: float | None,
    observed: tuple[list[datetime], list[float]] | None = None,
) -> str:
    """One sensor's latest forecast: the prediction, its interval as a band, the limit, recent readings."""
    traces: list = [
        go.Scatter(x=target, y=upper, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip"),
        go.Scatter(
            name="prediction interval",
            x=target,
            y=lower,
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor="rgba(31,119,180,0.2)",
        ),
        go.Scatter(name="forecast", x=target, y=predicted, mode="lines", line={"color": "#1f77b4"}),
    ]
    if observed and observed[0]:
        traces.append(_line("observed", observed[0], observed[1], line={"color": "#555", "width": 1}))
    fig = go.Figure(traces)
    if limit is not None:
        fig.add_hline(y=limit, line={"color": "#d62728", "dash": "dot"}, annotation_text=f"limit {limit:g}")
    _layout(fig, f"{sensor}: forecast made {made_at:%H:%M:%S}", 250, None, sensor)
    return _html(fig, "forecast")


@dataclass(frozen=True)
class Bar:
    """A row of the timeline: a fault or an alert, from start to end."""

    row: str
    start: datetime
    end: datetime
    color: str
    text: str


def timeline_chart(bars: list[Bar], t_range: tuple[datetime, datetime]) -> str:
    """Faults and alerts as bars on one time axis."""
    fig = go.Figure()
    for b in bars:
        fig.add_trace(
            go.Bar(
                x=[(b.end - b.start).total_seconds() * 1000],
                base=[b.start],
                y=[b.row],
                orientation="h",
                marker_color=b.color,
                name=b.row,
                hovertext=escape(b.text),
                hoverinfo="text",
                showlegend=False,
            )
        )
    _layout(fig, "faults (grey) and alerts", 90 + 28 * len({b.row for b in bars}), t_range, "")
    fig.update_yaxes(autorange="reversed", title_text="")
    fig.update_layout(hovermode="closest", barmode="overlay")
    return _html(fig, "timeline")
