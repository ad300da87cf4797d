"""The web view in real headless Chromium (Debian's, driven by Playwright): fleet → twin → change a
setpoint and see it synchronized; a change the policy denies shows its reason and reaches no device;
the anomaly score and health against their thresholds; predicted failures in the fleet and a twin's
remaining useful life; a model of your own's outputs picked on the twin page; acknowledge and shelve an
alert. Screenshots go to test-artefacts/."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.api.conftest import (
    Live,
    active_alert_kinds,
    failing_twin,
    offline_twin,
    predict_failure,
    publish_score,
    two_models_alerts_twin,
)
from tests.twin_kafka import wait_for

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, live: Live) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    external: list[str] = []
    pg.on("request", lambda req: None if req.url.startswith(live.base) else external.append(req.url))
    yield pg
    context.close()
    assert not errors, errors
    assert not external, f"the page loaded from other hosts: {external}"  # works offline


def test_fleet_to_twin_and_a_setpoint_synchronizes(page: Page, live: Live):
    page.goto(f"{live.base}/#token={live.token}")
    row = page.locator(f"tr[data-twin='{live.twin}']")
    expect(row).to_be_visible(timeout=15_000)
    expect(page.locator("#who")).to_have_text("ann")
    expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))
    page.screenshot(path=live.artefacts / "web-fleet.png", full_page=True)

    row.locator("a").click()
    speed = page.locator("#params-table tr[data-param='speed']")
    expect(speed).to_be_visible()
    expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))  # the twin's event stream is open
    expect(page.locator("[data-testid=live-sensor] .main-svg").first).to_be_visible()  # a Plotly chart was drawn
    current = float(speed.locator("[data-testid=reported]").inner_text())
    target = 150.0 if abs(current - 150.0) > 20 else 100.0
    page.select_option("[data-testid=param]", "speed")
    page.fill("[data-testid=value]", str(target))
    page.fill("[data-testid=reason]", "browser test")
    page.click("#desired-form button[type=submit]")
    expect(page.locator("#desired-result")).to_contain_text("accepted")
    expect(page.locator("[data-testid=synchronized]")).to_be_visible(timeout=30_000)
    expect(speed.locator("[data-testid=desired]")).to_have_text(f"{target:g}")
    # the table is repainted at most twice a second: the reported cell follows the synchronized message
    deadline = time.monotonic() + 15
    reported = float(speed.locator("[data-testid=reported]").inner_text())
    while abs(reported - target) > 2.0 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        reported = float(speed.locator("[data-testid=reported]").inner_text())
    assert abs(reported - target) <= 2.0
    page.screenshot(path=live.artefacts / "web-twin.png", full_page=True)


def test_acknowledge_and_shelve_an_alert(page: Page, live: Live, scores_high):
    page.goto(f"{live.base}/#token={live.token}")
    page.goto(f"{live.base}/#/twins/{live.alert_twin}")
    expect(page.locator("#score-chart .main-svg").first).to_be_visible(timeout=15_000)
    expect(page.locator("[data-testid=forecast-chart] .main-svg").first).to_be_visible(timeout=15_000)
    # a fresh alert (earlier tests may have left one acknowledged or shelved): wait for an ack button
    alert_row = page.locator("#alerts-table tr[data-alert]").filter(has=page.locator("[data-testid=ack]")).first
    expect(alert_row).to_be_visible(timeout=30_000)
    alert_id = alert_row.get_attribute("data-alert")
    alert_row.locator("[data-testid=ack]").click()
    row = page.locator(f"#alerts-table tr[data-alert='{alert_id}']")
    expect(row.locator("[data-testid=isa-state]")).to_contain_text("ack_active")
    unexpected: list[str] = []

    def answer(dialog) -> None:
        if "how many minutes" in dialog.message:
            dialog.accept("5")
        elif "Reason" in dialog.message:
            dialog.accept("pump being serviced")
        else:  # an alert() with an error
            unexpected.append(dialog.message)
            dialog.accept()

    page.on("dialog", answer)
    row.locator("[data-testid=shelve]").click()
    assert not unexpected, unexpected
    expect(row.locator("[data-testid=isa-state]")).to_contain_text("shelved")
    expect(row.locator("[data-testid=unshelve]")).to_be_visible()
    page.screenshot(path=live.artefacts / "web-alerts.png", full_page=True)


def test_a_change_the_policy_denies_shows_its_reason_and_reaches_no_device(page: Page, live: Live):
    from confluent_kafka import Consumer, TopicPartition

    from connectors.kafka.clients import client_config

    topic = live.settings.twin.commands_topic
    consumer = Consumer(client_config(live.settings, **{"group.id": f"web-{time.time()}", "enable.auto.commit": False}))
    _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, high)])
    try:
        page.goto(f"{live.base}/#token={live.token}")
        page.goto(f"{live.base}/#/twins/{live.twin}")
        speed = page.locator("#params-table tr[data-param='speed']")
        expect(speed).to_be_visible(timeout=15_000)
        before = speed.locator("[data-testid=desired]").inner_text()
        page.select_option("[data-testid=param]", "speed")
        page.fill("[data-testid=value]", "9999")  # the policy allows 0…3000 (tests/api/conftest.py)
        page.fill("[data-testid=reason]", "browser test: out of range")
        page.click("#desired-form button[type=submit]")
        refused = page.locator("#desired-result[data-testid=refused]")
        expect(refused).to_contain_text("403 denied by the policy")
        expect(refused.locator("[data-testid=deny-reason]")).to_have_text("out_of_range")
        page.screenshot(path=live.artefacts / "web-deny.png", full_page=True)
        expect(speed.locator("[data-testid=desired]")).to_have_text(before)
        deadline = time.monotonic() + 5  # nothing of it on twin.commands
        seen = []
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                seen.append(json.loads(msg.value()))
        assert not [c for c in seen if c["twin_id"] == live.twin and c["value"] == 9999.0], seen
    finally:
        consumer.close()


def test_twin_page_shows_score_and_health_against_their_thresholds(page: Page, live: Live):
    page.goto(f"{live.base}/#token={live.token}")
    page.goto(f"{live.base}/#/twins/{live.alert_twin}")
    now = page.locator("#score-now")
    expect(now.locator("[data-testid=score-threshold]")).to_have_text("0.6", timeout=15_000)  # the records' threshold
    assert float(now.locator("[data-testid=score]").inner_text()) in (0.2, 0.9)
    expect(now.locator("[data-testid=health]")).to_have_text("0.85")
    expect(now.locator("[data-testid=health-open]")).to_have_text("0.5")  # [alerts.rules] health_open
    expect(now.locator("[data-testid=health-clear]")).to_have_text("0.7")  # health_clear
    legend = page.locator("#score-chart .legend")
    for name in ("anomaly score", "score threshold", "health index", "health alarm (below 0.5)"):
        expect(legend).to_contain_text(name)
    page.locator(".card", has=page.locator("#score-chart")).screenshot(path=live.artefacts / "web-scores.png")


def test_an_offline_device_is_shown_with_its_reason(page: Page, live: Live):
    twin = offline_twin(live, "web-gateway-lost")
    page.goto(f"{live.base}/#token={live.token}")
    page.goto(f"{live.base}/#/twins/{twin}")
    conn = page.locator("[data-testid=connectivity]")
    expect(conn).to_contain_text("device offline", timeout=30_000)
    expect(conn).to_contain_text(f"opcua BadNoCommunication on {twin}.speed")
    expect(page.locator("#status .badge").first).to_have_text("offline")


def test_a_device_that_lost_one_tag_stays_online_with_the_tag_marked(page: Page, live: Live):
    twin = offline_twin(live, "web-tag-lost", others={"temp_c": 40.0})
    page.goto(f"{live.base}/#token={live.token}")
    page.goto(f"{live.base}/#/twins/{twin}")
    expect(page.locator("[data-testid=unreachable-count]")).to_have_text("1 sensor unreachable", timeout=30_000)
    expect(page.locator("#status .badge").first).not_to_have_text("offline")
    expect(page.locator("[data-testid=connectivity]")).to_have_count(0)
    speed = page.locator("#params-table tr[data-param=speed] [data-testid=reported]")
    expect(speed).to_contain_text("unreachable")
    expect(page.locator("#params-table tr[data-param=temp_c] [data-testid=reported]")).to_have_text("40")


def test_times_not_of_today_carry_their_date(page: Page, live: Live):
    """"offline since 14:02:11" said nothing of the day: an output or an outage of yesterday reads as today's."""
    page.goto(f"{live.base}/#token={live.token}")
    today, yesterday = page.evaluate(
        "() => { const now = new Date(); return [time(now.toISOString()), time(new Date(now - 864e5).toISOString())]; }"
    )
    assert page.evaluate("() => new Date().toLocaleDateString()") not in today, today  # the time of day only
    assert page.evaluate("() => new Date(Date.now() - 864e5).toLocaleDateString()") in yesterday, yesterday
    assert page.evaluate("time(null)") == "–"


def test_predicted_failures_in_the_fleet_and_a_twins_remaining_useful_life(page: Page, live: Live):
    failing = failing_twin(live, "web-rul", rul_h=[12.0, 9.0, 6.0], p=[0.3, 0.45, 0.6])
    calm = failing_twin(live, "web-rul-calm", rul_h=[500.0], p=[0.01])
    with live.client() as c:  # written by the alerts flow, and both twins have a state
        wait_for(
            "the predictions and states",
            lambda: [f["twin_id"] for f in c.get("/api/v1/failures", params={"twin": [failing, calm]}).json()["items"]]
            == [failing] and all(c.get(f"/api/v1/twins/{t}").status_code == 200 for t in (failing, calm))
            and c.get(f"/api/v1/twins/{calm}/failures").json()["ts"],
            timeout=30,
        )  # fmt: skip
    page.goto(f"{live.base}/#token={live.token}")
    cell = page.locator(f"tr[data-twin='{failing}'] [data-testid=predicted-failure]")
    expect(cell).to_contain_text("in 6.0 h", timeout=15_000)  # the latest prediction: 6 h from now
    expect(cell).to_contain_text("p 0.6")
    expect(cell.locator(".badge")).to_have_class(re.compile(r"\bcritical\b"))  # within a day
    expect(page.locator(f"tr[data-twin='{calm}'] [data-testid=predicted-failure]")).to_have_text("–")  # 500 h, p 0.01
    page.locator("#fleet-table").screenshot(path=live.artefacts / "web-fleet-failures.png")

    page.locator(f"tr[data-twin='{failing}'] a").click()
    now = page.locator("#failure-now")
    expect(now.locator("[data-testid=rul]")).to_have_text("6.0 h", timeout=15_000)
    expect(now.locator("[data-testid=failure-probability]")).to_have_text("0.6")
    expect(now.locator("[data-testid=failure-model]")).to_have_text("twinflow-t2-rul:pumps")
    legend = page.locator("#failure-chart .legend")
    for name in ("remaining useful life (h)", "failure probability"):
        expect(legend).to_contain_text(name)
    page.locator(".card", has=page.locator("#failure-chart")).screenshot(path=live.artefacts / "web-failures.png")
    page.goto(f"{live.base}/#/twins/{live.twin}")  # a twin without predictions says so
    expect(page.locator("#failure-chart")).to_contain_text("no failure predictions in the last 24 hours")


def test_the_twin_page_shows_the_outputs_of_the_model_picked(page: Page, live: Live):
    """Two models score a twin: the page shows the built-in models' and offers the other, whose scores and
    failure predictions it then shows; the address keeps the choice."""
    twin = failing_twin(live, "web-models", rul_h=[300.0], p=[0.05])  # a state and a built-in prediction
    now = datetime.now(UTC)
    for i in range(3, -1, -1):
        publish_score(live, twin, now - timedelta(seconds=i), 0.2)
        publish_score(live, twin, now - timedelta(seconds=i), 0.77, "vib-lstm")
    predict_failure(live, twin, now, 3.0, 0.8, "vib-lstm")
    with live.client() as c:
        wait_for(
            "both models' outputs",
            lambda: len(c.get(f"/api/v1/twins/{twin}/models").json()["items"]) == 2
            and c.get(f"/api/v1/twins/{twin}/failures", params={"model": "vib-lstm"}).json()["ts"]
            and len(c.get(f"/api/v1/twins/{twin}/scores", params={"model": "vib-lstm"}).json()["ts"]) == 4
            and c.get(f"/api/v1/twins/{twin}").status_code == 200,
            timeout=30,
        )  # fmt: skip
    page.goto(f"{live.base}/#token={live.token}")
    page.goto(f"{live.base}/#/twins/{twin}")
    score = page.locator("#score-now [data-testid=score]")
    expect(score).to_have_text("0.2", timeout=15_000)  # the built-in models' by default
    expect(page.locator("#failure-now [data-testid=failure-model]")).to_have_text("twinflow-t2-rul:pumps")
    picker = page.locator("[data-testid=model]")
    expect(picker).to_be_visible()
    expect(picker.locator("option")).to_have_count(2)
    picker.select_option("vib-lstm")
    expect(score).to_have_text("0.77", timeout=15_000)
    expect(page.locator("#score-now [data-testid=score-threshold]")).to_have_text("0.6")
    expect(page.locator("#failure-now [data-testid=failure-model]")).to_have_text("vib-lstm", timeout=15_000)
    expect(page.locator("#failure-now [data-testid=rul]")).to_have_text("3.0 h")
    assert page.evaluate("location.hash") == f"#/twins/{twin}?model=vib-lstm"
    page.locator("#main").screenshot(path=live.artefacts / "web-model-picked.png")
    page.reload()  # a link to the page shows the same model
    expect(page.locator("#score-now [data-testid=score]")).to_have_text("0.77", timeout=15_000)
    expect(page.locator("[data-testid=model]")).to_have_value("vib-lstm")
    page.locator("[data-testid=model]").select_option("twinflow")
    expect(page.locator("#score-now [data-testid=score]")).to_have_text("0.2", timeout=15_000)
    assert page.evaluate("location.hash") == f"#/twins/{twin}"
    page.goto(f"{live.base}/#/twins/{live.twin}")  # one model (or none): no picker
    expect(page.locator("#summary [data-testid=version]")).to_be_visible(timeout=15_000)
    expect(page.locator("[data-testid=model]")).to_have_count(0)


def test_the_alerts_card_shows_the_alerts_of_the_model_picked(page: Page, live: Live):
    """The alerts card listed every model's alerts whichever model was picked: it now shows those the picked
    model raised (`GET /alerts?model=`) and says so; with none picked (the built-in models), all of them."""
    twin = two_models_alerts_twin(live, "web-model-alerts")
    with live.client() as c:
        wait_for(
            "both alerts, both models and a state",
            lambda: active_alert_kinds(c, twin) == ["anomaly", "failure"]
            and len(c.get(f"/api/v1/twins/{twin}/models").json()["items"]) == 2
            and c.get(f"/api/v1/twins/{twin}").status_code == 200,
            timeout=30,
        )  # fmt: skip
    page.goto(f"{live.base}/#token={live.token}")
    page.goto(f"{live.base}/#/twins/{twin}")
    rows = page.locator("#alerts-table tr[data-alert]")
    scope = page.locator("[data-testid=alerts-model]")
    expect(rows).to_have_count(2, timeout=15_000)
    expect(scope).to_have_text("(all models)")
    page.locator("[data-testid=model]").select_option("vib-lstm")
    expect(rows).to_have_count(1, timeout=15_000)
    expect(rows.first.locator("td").first).to_contain_text("anomaly")
    expect(scope).to_have_text("(raised by vib-lstm)")
    page.locator(".card", has=page.locator("#alerts")).screenshot(path=live.artefacts / "web-model-alerts.png")
    page.reload()  # the address keeps the model, and so the alerts shown
    expect(scope).to_have_text("(raised by vib-lstm)", timeout=15_000)
    expect(rows).to_have_count(1)
    page.locator("[data-testid=model]").select_option("twinflow")
    expect(rows).to_have_count(2, timeout=15_000)
    expect(scope).to_have_text("(all models)")
    ids = sorted(rows.evaluate_all("rs => rs.map((r) => r.dataset.alert)"))
    page.click("[data-testid=twin-deliveries]")  # the webhook deliveries of the twin's alerts
    expect(page.locator("[data-testid=filter-twin]")).to_contain_text(twin)
    expect(page.locator("#deliveries-table tr[data-alert]").first).to_be_visible(timeout=15_000)
    listed = page.locator("#deliveries-table tr[data-alert]").evaluate_all("rs => rs.map((r) => r.dataset.alert)")
    assert sorted(set(listed)) == ids


def _refused_alert(live: Live, twin: str) -> None:
    """An anomaly alert of ``twin`` whose webhook delivery the receiver refuses (410: failed at once)."""
    live.receiver.refuse.add(twin)
    publish_score(live, twin, datetime.now(UTC), 0.95)


def test_webhook_deliveries_are_listed_by_status_and_queued_again(page: Page, live: Live):
    """The web view had no view of the webhook outbox: the failed deliveries are listed with the receiver's
    answer and error, filtered by status and twin, and queued again with the page's token, one alert's or every
    failed one; the page shows the server's answer, also a refusal (a token revoked meanwhile: 401)."""
    from twinflow.api.tokens import TokenStore

    stamp = int(time.time() * 1000)
    one, every, revoked = (f"{live.alert_twin}-web-hook-{n}-{stamp}" for n in ("one", "all", "revoked"))
    for twin in (one, every, revoked):
        _refused_alert(live, twin)
    with live.client() as c:

        def failed(twin: str) -> str | None:
            items = c.get("/api/v1/alerts/deliveries", params={"twin": twin, "state": "failed"}).json()["items"]
            return items[0]["alert_id"] if items else None

        aid = {t: wait_for(f"{t}'s delivery failed", lambda t=t: failed(t), timeout=30) for t in (one, every, revoked)}

    page.goto(f"{live.base}/#token={live.token}")
    expect(page.locator("#fleet-table")).to_be_visible(timeout=15_000)
    page.click("#nav-deliveries")
    expect(page.locator("h1")).to_have_text("Webhook deliveries")
    page.select_option("[data-testid=delivery-state]", "failed")
    expect(page).to_have_url(re.compile(r"#/deliveries\?state=failed$"))
    row = page.locator(f"#deliveries-table tr[data-alert='{aid[one]}']")
    expect(row).to_be_visible(timeout=15_000)
    states = page.locator("#deliveries-table [data-testid=delivery-state]")
    assert set(states.all_inner_texts()) == {"failed"}
    expect(row.locator("[data-testid=http-status]")).to_have_text("410")
    expect(row.locator("[data-testid=last-error]")).to_contain_text("HTTP 410")
    expect(row.locator("[data-testid=attempts]")).to_have_text("1")
    expect(page.locator("[data-testid=outbox-counts]")).to_contain_text("failed")
    page.screenshot(path=live.artefacts / "web-deliveries.png", full_page=True)

    # one alert's, from the list filtered on its twin, once the receiver is fixed
    page.goto(f"{live.base}/#/deliveries?state=failed&twin={one}")
    expect(page.locator("[data-testid=filter-twin]")).to_contain_text(one)
    expect(page.locator("#deliveries-table tr[data-alert]")).to_have_count(1, timeout=15_000)
    live.receiver.refuse.discard(one)
    page.locator(f"tr[data-alert='{aid[one]}'] [data-testid=redeliver]").click()
    queued = page.locator("#deliveries-result[data-testid=queued]")
    expect(queued).to_have_text(f"1 version(s) of {aid[one]} queued again by ann")
    page.select_option("[data-testid=delivery-state]", "all")
    row = page.locator(f"#deliveries-table tr[data-alert='{aid[one]}']")
    expect(row.locator("[data-testid=delivery-state]")).to_have_text("delivered", timeout=30_000)
    expect(row.locator("[data-testid=http-status]")).to_have_text("204")
    expect(row.locator("[data-testid=redelivered-by]")).to_contain_text("ann")

    # every failed delivery (the outbox's, whatever the filter shows: also that of `revoked`, refused again)
    live.receiver.refuse.discard(every)
    page.goto(f"{live.base}/#/deliveries?twin={every}")
    row = page.locator(f"#deliveries-table tr[data-alert='{aid[every]}']")
    expect(row.locator("[data-testid=delivery-state]")).to_have_text("failed", timeout=15_000)
    page.click("[data-testid=redeliver-all]")
    expect(page.locator("#deliveries-result[data-testid=queued]")).to_contain_text("queued again by ann")
    expect(row.locator("[data-testid=delivery-state]")).to_have_text("delivered", timeout=30_000)
    expect(row.locator("[data-testid=redelivered-by]")).to_contain_text("ann")

    # the server decides: a token revoked after the page read the list is refused, and the page says so
    tokens_file = Path(live.env["TWINFLOW_API__TOKENS_FILE"])
    store = TokenStore.load(tokens_file)
    carl, entry = store.issue("carl")
    store.save(tokens_file)
    with live.client(token=carl) as c:  # the server reads the tokens file again within a second
        wait_for("the token taken", lambda: c.get("/api/v1/me").status_code == 200, timeout=10)
    page.goto(f"{live.base}/#token={carl}")
    page.reload()  # signed in again, as carl
    expect(page.locator("#who")).to_have_text("carl", timeout=15_000)
    page.goto(f"{live.base}/#/deliveries?state=failed&twin={revoked}")
    button = page.locator(f"tr[data-alert='{aid[revoked]}'] [data-testid=redeliver]")
    expect(button).to_be_visible(timeout=15_000)
    button.click()  # carl has a token but no right (not in the subjects file): the policy's 403, with the reason
    refused = page.locator("#deliveries-result[data-testid=refused]")
    expect(refused).to_contain_text("403 Forbidden: denied: unknown_subject: 'carl' is not in")
    expect(button).to_be_visible(timeout=15_000)
    store = TokenStore.load(tokens_file)
    assert store.revoke(entry.id)
    store.save(tokens_file)
    with live.client(token=carl) as c:
        wait_for("the token revoked", lambda: c.get("/api/v1/me").status_code == 401, timeout=10)
    button.click()
    expect(refused).to_have_text("401 Unauthorized: unknown or revoked token")
    with live.client() as c:
        [kept] = c.get(f"/api/v1/alerts/{aid[revoked]}/deliveries").json()["items"]
    assert (kept["state"], kept["redelivered_by"]) == ("failed", "ann")  # queued by every failed one's, not carl
    live.receiver.refuse.discard(revoked)
