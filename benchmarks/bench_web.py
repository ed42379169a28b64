"""Benchmark the web dashboard in headless Chromium (Debian's, via Playwright).

Builds (once; cached in ``--dir``) an archive of 4 fields x 1 year at 1 Hz
(126 M values, hourly files), starts a router, a hub, ``sisock serve
hdf5`` on it, a live ``sisock serve sensors`` node and ``sisock web``, then
prints, from the same run:

* navigation -> all four charts painted (page load, node/field listing,
  four binary queries at pixel ``min_stride`` with ``minmax``, drawing);
* zoom (a drag on one panel) -> every panel repainted with re-queried data;
* a live sample published by a node -> drawn on the page (wall clock);
* the baseline: the same four fields' first paint through the Grafana
  SimpleJSON ``/query`` path (JSON ``[[v, ms]]`` lists, ``min_stride``
  from ``intervalMs``/``maxDataPoints`` as Grafana sends them) drawn with
  the same uPlot, next to ``/api/data``'s binary frame at the same stride
  (mean, and minmax as the dashboard asks), measured the same way in the
  page (fetch + decode + draw).

Each figure is the median (and best) of ``--repeat`` runs. Asserts
nothing about time; the machine is shared, so run it twice.

With ``--nodes N`` it measures a crowded page instead: N archive nodes
serving the same archive (``--days``, 7 by default), N panels of 4 fields,
and a second tab showing the same view: navigation -> every panel painted,
zoom -> every panel repainted, data requests per zoom, and a live sample
-> drawn with every node in a live view. ``--static DIR`` serves another
build of the dashboard (an older one, to compare); a figure that never
comes within the wait is reported as such.

Usage::

    python benchmarks/bench_web.py [--dir DIR] [--days 365] [--repeat 5]
    python benchmarks/bench_web.py --nodes 8 [--static OLD/web/dist] [--repeat 3]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from chromium import launch  # noqa: E402  (tests/chromium.py: the flags the browser tests use)

from sisock.site import credentials
from sisock.core.protocol import FieldSpec
from sisock.archive.writer import ArchiveWriter
from sisock.cli.demo import Stack, wait_for_nodes
from sisock.site.ports import free_port, wait_port
from sisock.site.settings import load_settings

DAY = 86400
FIELDS = ["temp_a", "temp_b", "pressure", "flow"]
IDLE = "window.sisock && window.sisock.ready && window.sisock.pending === 0"


def build(directory: Path, days: int) -> tuple[float, float, float]:
    """Write 4 fields at 1 Hz for ``days`` days ending at a midnight; cached.

    Returns ``(start, end, build seconds)``.
    """
    marker = directory / f".complete-{days}"
    if marker.exists():
        t0, t1 = json.loads(marker.read_text())
        return t0, t1, 0.0
    directory.mkdir(parents=True, exist_ok=True)
    for p in glob.glob(str(directory / "*.h5")):
        os.remove(p)
    t1 = float(int(time.time() // DAY) * DAY)
    t0 = t1 - days * DAY
    began = time.perf_counter()
    rng = np.random.default_rng(1)
    specs = {
        "temp_a": FieldSpec("number", "K", "stage A"),
        "temp_b": FieldSpec("number", "K", "stage B"),
        "pressure": FieldSpec("number", "mbar", "pressure"),
        "flow": FieldSpec("number", "l/min", "flow"),
    }
    walk = np.zeros(4)
    with ArchiveWriter(str(directory), rotate_seconds=3600, flush_interval=1e9) as w:
        w.define_timeline("bench", specs)
        for d in range(days):
            t = t0 + d * DAY + np.arange(DAY, dtype=np.float64)
            cols = {}
            for i, f in enumerate(FIELDS):
                y = walk[i] + np.cumsum(rng.normal(0, 0.01, DAY)) + (i + 1) * np.sin(2 * np.pi * t / DAY)
                walk[i] = float(y[-1]) - (i + 1) * np.sin(2 * np.pi * t[-1] / DAY)
                cols[f] = y
            w.append("bench", t, cols)
            w.flush()
            if d % 30 == 29:
                print(f"  built {d + 1} days", file=sys.stderr, flush=True)
    marker.write_text(json.dumps([t0, t1]))
    return t0, t1, time.perf_counter() - began


def stats(xs: list[float]) -> str:
    return f"median {statistics.median(xs):7.0f} ms, best {min(xs):7.0f} ms"


BASELINE_JS = """
async ([mode, urls, body, width]) => {
  const t0 = performance.now();
  const box = document.createElement('div');
  document.body.append(box);
  const U = window.sisock.uPlot;
  let sets;
  if (mode === 'query') {
    const r = await fetch('query', {method: 'POST', body: JSON.stringify(body),
                                    headers: {'Content-Type': 'application/json'}});
    const series = await r.json();
    sets = series.map(s => [s.datapoints.map(p => p[1] / 1000), s.datapoints.map(p => p[0])]);
  } else {
    sets = await Promise.all(urls.map(async u => {
      const buf = await (await fetch(u)).arrayBuffer();
      const dv = new DataView(buf);
      const h = dv.getUint32(8, true);
      const head = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 16, h)));
      return Object.values(head.fields).map(f => {
        const tl = head.timelines[f.timeline];
        return [new Float64Array(buf, 16 + h + tl.offset * 8, tl.length),
                new Float64Array(buf, 16 + h + f.offset * 8, f.length)];
      });
    }));
    sets = sets.flat();
  }
  let points = 0;
  for (const d of sets) {
    points += d[0].length;
    new U({width, height: 200, scales: {x: {time: true}}, series: [{}, {stroke: 'red'}]}, d, box);
  }
  const ms = performance.now() - t0;
  box.remove();
  return [ms, points];
}
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "sisock-bench-web")
    ap.add_argument("--days", type=int, default=None, help="archive length (365; 7 with --nodes)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--nodes", type=int, default=0, help="crowded page: this many archive nodes")
    ap.add_argument("--static", type=Path, default=None, help="dashboard build to serve")
    ap.add_argument("--one-tab", action="store_true", help="with --nodes: no second tab")
    args = ap.parse_args(argv)
    if args.days is None:
        args.days = 7 if args.nodes else 365
    from playwright.sync_api import sync_playwright

    t0, t1, built = build(args.dir / "archive", args.days)
    print(
        f"archive: {len(FIELDS)} fields x {args.days} days at 1 Hz "
        f"({len(FIELDS) * args.days * DAY / 1e6:.0f} M values, {args.days * 24} files)"
        + (f", built in {built:.0f} s" if built else " (cached)"),
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="bench_web_") as tmp:
        home = Path(tmp)
        port, web_port = free_port(), free_port()
        settings = load_settings(router_url=f"ws://127.0.0.1:{port}/ws", home=str(home))
        credentials.ensure(settings.home)
        stack = Stack(settings, home)
        try:
            router = stack.start("router", "router", "--loglevel", "warn")
            wait_port(port, 60, router)
            stack.start("hub", "hub")
            names = [f"bench{k}" for k in range(args.nodes)] if args.nodes else ["bench"]
            for name in names:
                stack.start(name, "serve", "hdf5", "--name", name, "--archive", str(args.dir / "archive"))
            stack.start("benchlive", "serve", "sensors", "--name", "benchlive", "--interval", "0.5")
            static = ["--static", str(args.static)] if args.static else []
            web = stack.start("web", "web", "--port", str(web_port), *static)
            wait_port(web_port, 60, web)
            wait_for_nodes(settings, {*names, "benchlive"}, 120)
            url = f"http://127.0.0.1:{web_port}"
            # the archive node reads its catalog in a thread at start: wait for a first answer
            q = (
                f"{url}/api/data?node={names[0]}&fields={','.join(FIELDS)}&start={t0}&end={t1}"
                f"&min_stride={(t1 - t0) / 1000}&method=minmax&format=binary"
            )
            began = time.perf_counter()
            urllib.request.urlopen(q, timeout=600).read()
            print(f"first (cold) year query through the bridge: {(time.perf_counter() - began) * 1e3:.0f} ms")
            if args.nodes:
                run_crowded(sync_playwright, url, names, t0, t1, args.repeat, not args.one_tab)
            else:
                run_browser(sync_playwright, url, t0, t1, args.repeat)
        finally:
            stack.stop()
    return 0


def run_browser(sync_playwright, url: str, t0: float, t1: float, repeat: int) -> None:
    view = f"{url}/?panels={'|'.join('bench:' + f for f in FIELDS)}&from={t0}&to={t1}&live=0"
    nav, zoom, zoom_fetch, rescale, base_q, base_m, base_b = [], [], [], [], [], [], []
    with sync_playwright() as p:
        browser = launch(p)
        try:
            for i in range(repeat):
                ctx = browser.new_context(viewport={"width": 1400, "height": 1100})
                page = ctx.new_page()
                page.goto(view)
                page.wait_for_function(
                    IDLE + " && window.sisock.panels.length === 4 && "
                    "window.sisock.panels.every(p => p.data[0].length > 100)",
                    timeout=300_000,
                )
                # navigation start -> the last panel's first paint with fetched data
                nav.append(
                    page.evaluate(
                        "Math.max(...[0,1,2,3].map(k => window.sisock.paints.find("
                        "x => x.panel === k && x.reason === 'fetch').at))"
                    )
                )
                if i == 0:
                    page.screenshot(path=str(Path("artifacts") / "bench-web-year.png"), full_page=True)
                # zoom: drag over a tenth of the first panel
                box = page.locator(".panel .u-over").first.bounding_box()
                n = page.evaluate("window.sisock.paints.length")
                y = box["y"] + box["height"] / 2
                x0 = box["x"] + box["width"] * (0.3 + 0.05 * i)
                page.mouse.move(x0, y)
                page.mouse.down()
                page.mouse.move(x0 + box["width"] * 0.1, y, steps=4)
                page.mouse.up()
                page.wait_for_function(
                    f"{IDLE} && [0,1,2,3].every(k => window.sisock.paints.slice({n}).some("
                    "x => x.panel === k && x.reason === 'fetch' && x.at > window.sisock.zoomAt))",
                    timeout=120_000,
                )
                zoom.append(
                    page.evaluate(
                        "Math.max(...[0,1,2,3].map(k => window.sisock.paints.find(x => x.panel === k && "
                        "x.reason === 'fetch' && x.at > window.sisock.zoomAt).at)) - window.sisock.zoomAt"
                    )
                )
                zoom_fetch.append(
                    page.evaluate(
                        "Math.max(...window.sisock.requests.filter(r => r.at >= window.sisock.zoomAt)"
                        ".map(r => r.doneAt)) - window.sisock.zoomAt"
                    )
                )
                rescale.append(
                    page.evaluate(
                        "Math.max(...[0,1,2,3].map(k => window.sisock.paints.find(x => x.panel === k && "
                        "x.at >= window.sisock.zoomAt).at)) - window.sisock.zoomAt"
                    )
                )
                # baseline in the same page: SimpleJSON /query vs the binary frames
                width = int(box["width"])
                iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))  # noqa: E731
                body = {
                    "range": {"from": iso(t0), "to": iso(t1), "raw": {"from": "now-1y", "to": "now"}},
                    "intervalMs": int((t1 - t0) / width * 1000),
                    "maxDataPoints": width,
                    "targets": [
                        {"target": f"bench::{f}", "refId": chr(65 + k), "type": "timeserie"}
                        for k, f in enumerate(FIELDS)
                    ],
                }
                stride = body["intervalMs"] / 1000  # what Grafana's /query resolves to here
                one = (
                    f"api/data?node=bench&fields={','.join(FIELDS)}&start={t0}&end={t1}"
                    f"&min_stride={stride}&format=binary"
                )
                ms_q, pts_q = page.evaluate(BASELINE_JS, ["query", [], body, width])
                ms_m, pts_m = page.evaluate(BASELINE_JS, ["binary", [one], body, width])
                ms_b, pts_b = page.evaluate(BASELINE_JS, ["binary", [one + "&method=minmax"], body, width])
                base_q.append(ms_q)
                base_m.append(ms_m)
                base_b.append(ms_b)
                ctx.close()
            # live: sample timestamp (taken by the node as it publishes) -> drawn
            ctx = browser.new_context(viewport={"width": 1400, "height": 500})
            page = ctx.new_page()
            page.goto(f"{url}/?panels=benchlive:cpu_percent,benchlive:mem_percent&range=15m")
            page.wait_for_function("window.sisock.live && window.sisock.live.length >= 12", timeout=120_000)
            live = [(x["drawnAt"] - x["t"]) * 1e3 for x in page.evaluate("window.sisock.live")[2:]]
            ctx.close()
        finally:
            browser.close()
    print(f"\nheadless Chromium, {len(FIELDS)} panels of {width} px, {repeat} runs:")
    print(f"  navigation -> 4 charts painted (year, minmax at pixel stride): {stats(nav)}")
    print(f"  zoom -> 4 charts repainted with re-queried data:              {stats(zoom)}")
    print(f"    of which the query (HTTP + bridge + node) until received:   {stats(zoom_fetch)}")
    print(f"  zoom -> 4 charts rescaled (old data, before the answer):      {stats(rescale)}")
    print(
        f"  live sample published -> drawn ({len(live)} samples):            "
        f"median {statistics.median(live):7.0f} ms, max {max(live):7.0f} ms"
    )
    print("  first paint of the year, 4 fields, fetch + decode + draw in the page (same stride):")
    print(f"    baseline: Grafana SimpleJSON /query, JSON lists, mean ({pts_q} points): {stats(base_q)}")
    print(f"    /api/data binary frame, mean ({pts_m} points):                      {stats(base_m)}")
    print(f"    /api/data binary frame, minmax as the dashboard ({pts_b} points):   {stats(base_b)}")
    print(f"    ratio /query / binary mean (medians): {statistics.median(base_q) / statistics.median(base_m):.2f}x")


WAIT_MS = 60_000


def _within(page, condition: str, timeout: float = WAIT_MS) -> bool:
    """Wait for a page condition; False if it never held within ``timeout`` ms."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(f"() => ({condition})", timeout=timeout, polling=100)
        return True
    except PlaywrightTimeout:
        return False


def _goto(page, url: str) -> bool:
    """Open ``url``; False if even the page never loaded (connections starved)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.goto(url, timeout=WAIT_MS)
        return True
    except PlaywrightTimeout:
        return False


def _figure(xs: list[float | None]) -> str:
    done = [x for x in xs if x is not None]
    never = len(xs) - len(done)
    text = stats(done) if done else "never"
    return text + (f" ({never} of {len(xs)} runs never, waited {WAIT_MS / 1000:.0f} s)" if never and done else "")


def run_crowded(
    sync_playwright, url: str, names: list[str], t0: float, t1: float, repeat: int, two_tabs: bool = True
) -> None:
    """A page of one panel per node (4 fields each) while a second tab shows it too."""
    n = len(names)
    panels = "|".join(",".join(f"{node}:{f}" for f in FIELDS) for node in names)
    view = f"{url}/?panels={panels}&from={t0}&to={t1}&live=0"
    live_view = f"{url}/?panels={panels}|benchlive:cpu_percent&range=15m"
    painted = (
        f"[...Array({n}).keys()].every(k => window.sisock.paints.some(x => x.panel === k && x.reason === 'fetch'))"
    )
    nav, zoom, per_zoom, live = [], [], [], []
    with sync_playwright() as p:
        browser = launch(p)
        try:
            for i in range(repeat):
                ctx = browser.new_context(viewport={"width": 1400, "height": 900})
                if two_tabs:
                    other = ctx.new_page()  # the second tab: same view, live, left open
                    _goto(other, live_view)
                    _within(other, "window.sisock && window.sisock.ready", 30_000)
                page = ctx.new_page()
                ok = _goto(page, view) and _within(page, f"window.sisock && window.sisock.ready && {painted}")
                nav.append(
                    page.evaluate(
                        f"Math.max(...[...Array({n}).keys()].map(k => "
                        "window.sisock.paints.find(x => x.panel === k && "
                        "x.reason === 'fetch').at))"
                    )
                    if ok
                    else None
                )
                if i == 0 and ok:
                    page.screenshot(path=str(Path("artifacts") / "bench-web-crowded.png"), full_page=True)
                if not ok:
                    zoom.append(None)
                    per_zoom.append(None)
                    ctx.close()
                    continue
                _within(page, IDLE)
                box = page.locator(".panel .u-over").first.bounding_box()
                before = page.evaluate("window.sisock.requests.length")
                m = page.evaluate("window.sisock.paints.length")
                y = box["y"] + box["height"] / 2
                x0 = box["x"] + box["width"] * (0.3 + 0.05 * i)
                page.mouse.move(x0, y)
                page.mouse.down()
                page.mouse.move(x0 + box["width"] * 0.1, y, steps=4)
                page.mouse.up()
                ok = _within(
                    page,
                    f"{IDLE} && [...Array({n}).keys()].every(k => window.sisock.paints"
                    f".slice({m}).some(x => x.panel === k && x.reason === 'fetch' && "
                    "x.at > window.sisock.zoomAt))",
                )
                zoom.append(
                    page.evaluate(
                        f"Math.max(...[...Array({n}).keys()].map(k => window.sisock.paints.slice({m}).find("
                        "x => x.panel === k && x.reason === 'fetch' && x.at > window.sisock.zoomAt).at))"
                        " - window.sisock.zoomAt"
                    )
                    if ok
                    else None
                )
                page.wait_for_timeout(1500)  # let any further query of the same zoom start
                _within(page, IDLE)
                per_zoom.append(page.evaluate("window.sisock.requests.length") - before)
                ctx.close()
            # live: every node in a live view, the second tab open on it too
            ctx = browser.new_context(viewport={"width": 1400, "height": 900})
            if two_tabs:
                other = ctx.new_page()
                _goto(other, live_view)
            page = ctx.new_page()
            if _goto(page, live_view) and _within(
                page, "window.sisock && window.sisock.live && window.sisock.live.length >= 12"
            ):
                live = [(x["drawnAt"] - x["t"]) * 1e3 for x in page.evaluate("window.sisock.live")[2:]]
            ctx.close()
        finally:
            browser.close()
    tabs = "a second tab open on the same view" if two_tabs else "one tab"
    print(f"\nheadless Chromium, {n} nodes x {len(FIELDS)} fields in {n} panels, {tabs}, {repeat} runs:")
    print(f"  navigation -> {n} charts painted:          {_figure(nav)}")
    print(f"  zoom -> {n} charts repainted:              {_figure(zoom)}")
    done = [x for x in per_zoom if x is not None]
    print(f"  data requests per zoom:                 {', '.join(map(str, done)) if done else 'never'}")
    print(
        "  live sample published -> drawn:         "
        + (
            f"median {statistics.median(live):7.0f} ms, max {max(live):7.0f} ms ({len(live)} samples)"
            if live
            else "never"
        )
    )


if __name__ == "__main__":
    sys.exit(main())
