"""The dashboard in a real headless Chromium (Debian's, driven by Playwright).

Screenshots are saved under ``artifacts/`` (git-ignored) for a person to
look at. The page exposes what it plotted on ``window.sisock`` (uPlot's
data arrays, the requests it made, live samples drawn), which the tests
compare with the data node's own answers.
"""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from conftest import REPO, wait_for

pytestmark = pytest.mark.timeout(240)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO / "artifacts"
IDLE = "window.sisock && window.sisock.ready && window.sisock.pending === 0"


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page; JavaScript errors and Content-Security-Policy violations fail the test."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text)
          if "Content Security Policy" in m.text else None)
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors: {errors}"


def wait(page, condition: str, timeout: float = 60_000) -> None:
    """Wait for a JavaScript condition; on timeout say what the page was doing."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        # a function, not an expression: Playwright evaluates a bare expression with
        # eval() inside the page, which the bridge's Content-Security-Policy forbids
        page.wait_for_function(f"() => ({condition})", timeout=timeout)
    except PlaywrightTimeout:
        state = page.evaluate("window.sisock ? JSON.stringify({pending: window.sisock.pending, "
                              "errors: window.sisock.errors, requests: window.sisock.requests.length, "
                              "panels: window.sisock.panels.map(p => [p.fields, p.data[0].length])}) "
                              ": 'no window.sisock'")
        shot(page, "web-timeout")
        raise AssertionError(f"timed out waiting for {condition}; page state: {state}") from None


def shot(page, name: str) -> Path:
    """Save a full-page screenshot under artifacts/."""
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def plotted(page, panel: int) -> dict:
    """uPlot's data of a panel, with the request that produced it."""
    return page.evaluate(f"window.sisock.panels[{panel}]")


def last_request(page, field: str) -> dict:
    return page.evaluate(
        f"window.sisock.requests.filter(r => r.fields.includes({field!r})).slice(-1)[0]")


def series(data: dict, k: int) -> tuple[np.ndarray, list]:
    """(times, values) of series ``k`` without the gap markers (null)."""
    x, y = data["data"][0], data["data"][k]
    keep = [i for i, v in enumerate(y) if v is not None]
    return np.array([x[i] for i in keep]), [y[i] for i in keep]


def check_against_node(page, client, panel: int, field: str) -> int:
    """The panel's plotted series equals the node's answer to the same request."""
    data = plotted(page, panel)
    req = last_request(page, field)
    ref = client.get_data("webarch", [field], req["start"], req["end"],
                          min_stride=req["min_stride"], method=req["method"])
    tl = next(iter(ref.timelines.values()))
    values = ref.data[field]
    t, v = series(data, 1)
    if values.dtype.kind == "f":
        ok = ~np.isnan(values)
        np.testing.assert_array_equal(t, tl.t[ok])
        np.testing.assert_array_equal(np.array(v, dtype=float), values[ok])
    else:
        cats = data["cats"][f"webarch:{field}"]
        np.testing.assert_array_equal(t, tl.t)
        assert [cats[int(k)] for k in v] == [str(s) for s in values]
    assert data["stride"] == pytest.approx(req["min_stride"])
    return len(t)


def test_pick_zoom_reload(web_demo, client, page):
    """Pick two fields (search + click) into two panels, see the node's data plotted,
    drag-zoom and see a re-query at a smaller min_stride on both panels, reload
    and get the same view."""
    page.goto(web_demo.url + "/?panels=&range=1d")
    wait(page, IDLE, timeout=60_000)
    page.fill("#search", "stage_te")
    assert page.locator('[data-key="webarch:cryo_state"]').count() == 0  # filtered out
    page.click('[data-key="webarch:stage_temp"]')
    page.fill("#search", "")
    page.click("#add-panel")
    page.click('[data-key="webarch:cryo_state"]')
    wait(page, IDLE + " && window.sisock.panels.length === 2 && "
                           "window.sisock.panels.every(p => p.data[0].length > 100)", timeout=60_000)
    n_num = check_against_node(page, client, 0, "stage_temp")
    n_str = check_against_node(page, client, 1, "cryo_state")
    assert n_num > 500 and n_str > 100
    req = last_request(page, "stage_temp")
    assert req["method"] == "minmax" and req["end"] - req["start"] == pytest.approx(86400, abs=60)
    assert "units" not in page.locator(".panel").first.inner_text()  # the axis shows the unit
    assert "[K]" in page.locator(".panel").first.inner_text()
    shot(page, "web-two-fields")

    before = req["min_stride"]
    n_requests = page.evaluate("window.sisock.requests.length")
    box = page.locator(".panel .u-over").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.30, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, y, steps=6)
    page.mouse.up()
    wait(page, f"{IDLE} && window.sisock.requests.length >= {n_requests + 2}",
                           timeout=60_000)
    after = last_request(page, "stage_temp")
    assert after["min_stride"] < before / 4, (before, after["min_stride"])
    assert last_request(page, "cryo_state")["min_stride"] == pytest.approx(after["min_stride"])
    panels = page.evaluate("window.sisock.panels")
    assert panels[0]["xscale"] == pytest.approx(panels[1]["xscale"])  # one shared time axis
    check_against_node(page, client, 0, "stage_temp")
    query = parse_qs(urlsplit(page.url).query)
    assert query["panels"] == ["webarch:stage_temp|webarch:cryo_state"]
    assert float(query["from"][0]) == pytest.approx(after["start"], abs=0.01)
    page.hover(".panel .u-over >> nth=0")
    legend = page.locator(".panel").first.locator(".u-legend").inner_text()
    assert " K" in legend  # hover read-out with units
    shot(page, "web-zoomed")

    with page.expect_download() as dl:
        page.locator(".panel").first.locator("button.csv").click()
    text = Path(dl.value.path()).read_text().splitlines()
    assert text[0] == 'time,t,"webarch:stage_temp"'
    t_csv = np.array([float(line.split(",")[1]) for line in text[1:]])
    assert len(t_csv) > 10 and t_csv.min() >= after["start"] and t_csv.max() <= after["end"]

    page.reload()
    wait(page, IDLE + " && window.sisock.panels.length === 2 && "
                           "window.sisock.panels.every(p => p.data[0].length > 10)", timeout=60_000)
    again = plotted(page, 0)
    assert [p["fields"] for p in page.evaluate("window.sisock.panels")] == \
        [["webarch:stage_temp"], ["webarch:cryo_state"]]
    assert again["xscale"] == pytest.approx(panels[0]["xscale"], abs=0.01)
    assert last_request(page, "stage_temp")["start"] == pytest.approx(after["start"], abs=0.01)
    check_against_node(page, client, 0, "stage_temp")


def test_live_tail_and_node_loss(web_demo, procs, page):
    """A live node's tail grows on screen without re-fetching; stopping the node
    raises the banner naming it."""
    node = procs("brsens", "serve", "sensors", "--name", "brsens", "--interval", "0.25")
    wait_for(lambda: "brsens" in web_demo.nodes(), 30, "brsens never listed")
    page.goto(web_demo.url + "/?panels=brsens:cpu_percent,brsens:mem_percent&range=15m")
    wait(page, IDLE + " && window.sisock.panels.length === 1", timeout=60_000)
    count = "window.sisock.panels[0].data[0].length"
    n0 = page.evaluate(count)
    fetches = page.evaluate("window.sisock.requests.length")
    wait(page, f"{count} >= {n0 + 8} && window.sisock.live.length >= 8",
                           timeout=60_000)
    assert page.evaluate("window.sisock.requests.length") == fetches  # appended, not re-fetched
    live = page.evaluate("window.sisock.live")
    lag = [x["drawnAt"] - x["t"] for x in live]
    assert all(-1 < d < 30 for d in lag), lag
    t, v = series(plotted(page, 0), 2)
    assert all(0 < x <= 100 for x in v) and np.all(np.diff(t) > 0)
    assert "live: brsens" in page.inner_text("#top")
    shot(page, "web-live")

    node.stop()
    wait(page, "!document.querySelector('#banner').hidden && "
                           "document.querySelector('#banner').innerText.includes('brsens')",
                           timeout=60_000)
    assert "left the hub" in page.inner_text("#banner")
    shot(page, "web-node-stopped")


def test_default_view_for_a_newcomer(web_demo, page):
    """The bare URL shows a panel per data node with data, the last hour, live."""
    page.goto(web_demo.url + "/")
    wait(page, IDLE + " && window.sisock.panels.length >= 3 && "
         "window.sisock.panels.filter(p => p.data[0].length > 10).length >= 2")
    nodes = {f.split(":")[0] for p in page.evaluate("window.sisock.panels") for f in p["fields"]}
    assert {"webarch", "websens", "webwx"} <= nodes
    assert parse_qs(urlsplit(page.url).query)["range"] == ["1h"]
    wait(page, "window.sisock.live.length >= 2")  # websens appends live
    shot(page, "web-default-view")


def test_unknown_node_in_url_shows_what_failed(web_demo, page):
    """A shared link naming a node that is not there: the banner says which and why."""
    page.goto(web_demo.url + "/?panels=ghostnode:temp&range=1h")
    wait(page, "!document.querySelector('#banner').hidden", timeout=60_000)
    text = page.inner_text("#banner")
    assert "ghostnode" in text and "no data node" in text
    assert not math.isnan(page.evaluate("window.sisock.range[0]"))
