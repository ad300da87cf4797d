"""The demo report renders from seeded rows: summary numbers, and plots for every twin."""

from __future__ import annotations

import uuid
from html.parser import HTMLParser

import pytest

from connectors.postgres.migrate import migrate
from tests.seed import delete, seed
from twinflow.demo.report import write_report

pytestmark = pytest.mark.integration


class Inventory(HTMLParser):
    """Counts charts (by kind, with their number of traces) per twin section; reads table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.section: str | None = None
        self.charts: dict[str, list[tuple[str, int]]] = {}
        self.table: str | None = None
        self.cells: dict[str, list[str]] = {}
        self.scripts: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section" and "twin" in (a.get("class") or ""):
            self.section = a["id"].removeprefix("twin-")
        elif tag == "div" and "data-chart" in a and self.section:
            self.charts.setdefault(self.section, []).append((a["data-chart"], int(a["data-traces"])))
        elif tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        elif tag == "table":
            self.table = a.get("id")
        elif tag in ("td", "th"):
            self._in_cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.section = None
        elif tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell and self.table:
            self.cells.setdefault(self.table, []).append(data)


def test_report_renders_summary_and_plots_per_twin(stack_settings, tmp_path):
    conninfo = stack_settings.postgres.conninfo()
    migrate(conninfo, stack_settings.postgres.timescaledb)
    fleet = seed(conninfo, uuid.uuid4().hex[:8])
    try:
        out = tmp_path / "report.html"
        ev = write_report(
            conninfo,
            fleet.fault_schedule(tmp_path / "faults.json"),
            fleet.at(-120),
            fleet.end,
            out,
            fleet.twins,
        )
    finally:
        delete(conninfo, fleet)
    s = ev.summary
    # f's fault is detected (failure alert at the onset, condition 1 min and anomaly 2 min later); h's
    # fault is missed; h's anomaly spike matches no fault; d's desync alert is not a detecting kind
    assert (s["faults"], s["detected"], s["missed"], s["alerts"], s["false_alarms"]) == (2, 1, 1, 4, 1)
    assert s["median_delay_s"] == 0.0 and s["precision"] == pytest.approx(3 / 4, abs=1e-4)

    html = out.read_text()
    page = Inventory()
    page.feed(html)
    # every twin: one raw-resolution chart per sensor and the faults/alerts timeline (f: the fault and
    # its failure, condition and anomaly alerts); f and h also the
    # anomaly score with its threshold and a forecast with its interval band (upper, lower+fill, line,
    # observed); d has neither
    sensors = [("sensor", 1)] * 3
    assert page.charts == {
        fleet.f: [*sensors, ("score", 2), ("forecast", 4), ("timeline", 1 + 3)],
        fleet.h: [*sensors, ("score", 2), ("forecast", 4), ("timeline", 1 + 1)],
        fleet.d: [*sensors, ("timeline", 1)],
    }
    assert "Plotly.newPlot" in html and not page.scripts  # plotly.js inline: the report opens offline
    assert "(120 readings)" in html  # raw resolution: every reading, not minute means
    cells = page.cells
    half = len(cells["summary"]) // 2
    summary = dict(zip(cells["summary"][:half], cells["summary"][half:], strict=True))
    assert (summary["faults"], summary["missed"], summary["false_alarms"]) == ("2", "1", "1")
    assert "missed" in cells["faults"] and "yes" in cells["faults"]
    assert fleet.h in cells["false-alarms"]
