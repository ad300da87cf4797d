"""The demo report renders from seeded rows: summary numbers, and plots for every twin."""

from __future__ import annotations

import uuid
from html.parser import HTMLParser

import pytest

from connectors.postgres.migrate import migrate
from tests.seed import delete, seed
from twinflow.report import write_report

pytestmark = pytest.mark.integration


class Inventory(HTMLParser):
    """Counts <svg> elements (and polylines/polygons inside) per twin section; reads table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.section: str | None = None
        self.svgs: dict[str, int] = {}
        self.shapes: dict[str, dict[str, int]] = {}
        self.table: str | None = None
        self.cells: dict[str, list[str]] = {}
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section" and "twin" in (a.get("class") or ""):
            self.section = a["id"].removeprefix("twin-")
        elif tag == "svg" and self.section:
            self.svgs[self.section] = self.svgs.get(self.section, 0) + 1
        elif tag in ("polyline", "polygon") and self.section:
            counts = self.shapes.setdefault(self.section, {})
            counts[tag] = counts.get(tag, 0) + 1
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

    page = Inventory()
    page.feed(out.read_text())
    # every twin: 3 sensor charts, anomaly score, forecast, faults/alerts timeline
    assert page.svgs == {fleet.f: 6, fleet.h: 6, fleet.d: 6}
    # lines: 3 sensors each; f and h also score + threshold; f's forecast, limit and observed
    # values, with the prediction interval as a band (polygon)
    assert page.shapes == {
        fleet.f: {"polyline": 3 + 2 + 3, "polygon": 1},
        fleet.h: {"polyline": 3 + 2 + 3, "polygon": 1},
        fleet.d: {"polyline": 3},
    }
    cells = page.cells
    half = len(cells["summary"]) // 2
    summary = dict(zip(cells["summary"][:half], cells["summary"][half:], strict=True))
    assert (summary["faults"], summary["missed"], summary["false_alarms"]) == ("2", "1", "1")
    assert "missed" in cells["faults"] and "yes" in cells["faults"]
    assert fleet.h in cells["false-alarms"]
