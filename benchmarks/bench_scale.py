"""200 data nodes on one router, one hub and one ``sisock web``: what it costs, how fast it heals.

Starts a private stack (``sisock router``, ``sisock hub``, ``sisock web``)
and ``--live`` live nodes publishing at 1-10 Hz plus ``--archive`` archive
nodes (small archives made by ``sisock generate``), spread over at most
``--procs`` processes (``scale_nodes.py``: several ``NodeService`` in one
process). Then, in this order, it measures and prints:

* idle router CPU with the archive nodes only, then the router's, hub's,
  bridge's and node processes' CPU at steady state (psutil over
  ``--seconds``), and router CPU per 1,000 publications/s;
* ``GET /api/nodes`` latency with every node listed (and the hub's own
  ``get_data_node`` as the peer);
* live samples of ``--follow`` nodes: publish -> Server-Sent Event at an HTTP
  client, and publish -> drawn in headless Chromium (``--no-browser`` skips);
* the dashboard with every node: page ready, a search keystroke rendered;
* a node joining and leaving under that load (time until listed and
  unlisted; errors seen meanwhile by other consumers);
* the hub restarted: time until it lists every node again;
* the router restarted: time until the hub, then the bridge list every
  node again, and until live samples flow again.

Every phase has a deadline, so the run stops by itself (about 4-6 minutes
with the defaults); the load average is printed with the figures.

    .venv/bin/python benchmarks/bench_scale.py [--live 150] [--archive 50] [--procs 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from benchstack import BenchStack  # noqa: E402
from chromium import launch  # noqa: E402  (tests/chromium.py: the flags the browser tests use)
from scale_nodes import rates_for  # noqa: E402

from sisock._quiet import silence_bjdata  # noqa: E402
from sisock.site.ports import free_port, wait_port  # noqa: E402

silence_bjdata()

#: Longest wait of any phase, seconds.
PHASE_TIMEOUT = 90.0


def loadavg() -> str:
    """``/proc/loadavg``'s three averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def pct(xs: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``xs`` (nearest rank)."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def dist(xs: list[float], unit: str = "ms") -> str:
    """median / p95 / max of ``xs`` (already in ``unit``)."""
    if not xs:
        return "no samples"
    return f"median {statistics.median(xs):.1f} {unit}, p95 {pct(xs, 0.95):.1f}, max {max(xs):.1f} (n={len(xs)})"


class Stack(BenchStack):
    """The benchmark's processes: router, hub, bridge and node hosts."""

    def __init__(self, home: Path) -> None:
        super().__init__(home)
        self.web_port = free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.router: subprocess.Popen | None = None
        self.hub: subprocess.Popen | None = None
        self.web: subprocess.Popen | None = None
        self.joined: dict[str, float] = {}  # node -> time its session joined (host's report)
        self.counts: dict[int, int] = {}  # subscriber pid -> events received so far

    def start(self) -> "Stack":
        self.router = self.spawn("router", "--loglevel", "warn")
        wait_port(self.port, 60, self.router)
        self.hub = self.spawn("hub")
        self.wait(lambda c: c.nodes() is not None, "hub")
        self.web = self.spawn("web", "--port", str(self.web_port))
        wait_port(self.web_port, 60, self.web)
        return self

    def host(self, *argv: str) -> subprocess.Popen:
        """Start ``scale_nodes.py ARGV``; its join reports land in :attr:`joined`."""
        log = open(self.home / f"{len(self.procs)}-nodes.log", "ab")
        p = subprocess.Popen(
            [sys.executable, str(HERE / "scale_nodes.py"), *argv],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
            text=True,
        )
        self.procs.append(p)

        def read() -> None:
            for line in p.stdout:  # type: ignore[union-attr]
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if "joined" in event:
                    self.joined[event["joined"]] = event["t"]
                else:
                    self.counts[p.pid] = event["events"]

        threading.Thread(target=read, daemon=True).start()
        return p

    def restart(self, which: str) -> tuple[float, subprocess.Popen]:
        """Stop the router or the hub and start it again; return (time started, process)."""
        old = getattr(self, which)
        t_stop = time.time()
        self.stop_proc(old)
        self.stopped_in = time.time() - t_stop
        self.procs.remove(old)
        if which == "router":
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and _port_open(self.port):
                time.sleep(0.05)
        t0 = time.time()
        new = self.spawn("router", "--loglevel", "warn") if which == "router" else self.spawn("hub")
        # keep the start order (router first) for stop()
        self.procs.remove(new)
        self.procs.insert(0 if which == "router" else 1, new)
        setattr(self, which, new)
        return t0, new


def _port_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# -- watching ----------------------------------------------------------------------


class Watch:
    """A consumer session polling the hub, plus the hub's topics with arrival times."""

    def __init__(self) -> None:
        from sisock.client import connect

        self.client = connect(timeout=30)
        self.added: dict[str, float] = {}
        self.subtracted: dict[str, float] = {}
        self.client.subscribe_uri(
            "consumer.data_node_added", lambda info, *a, **k: self.added.__setitem__(info["name"], time.time())
        )
        self.hub_started: list[float] = []
        self.client.subscribe_uri("hub.started", lambda *a, **k: self.hub_started.append(time.time()))
        self.client.subscribe_uri(
            "consumer.data_node_subtracted",
            lambda info, *a, **k: self.subtracted.__setitem__(info["name"], time.time()),
        )

    def listed(self) -> dict[str, str]:
        """``{name: description}`` the hub lists now ({} while it cannot say)."""
        from sisock.client import ClientError

        try:
            return {n["name"]: n["description"] for n in self.client.nodes()}
        except ClientError:
            return {}

    def until(self, predicate, timeout: float = PHASE_TIMEOUT, every: float = 0.02) -> float | None:
        """Poll ``predicate(listed)``; the time.time() it first held, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.listed()):
                return time.time()
            time.sleep(every)
        return None


def web_nodes(url: str) -> set[str] | None:
    """Names ``GET /api/nodes`` lists (None on an error answer)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=10)
        conn.request("GET", "/api/nodes")
        r = conn.getresponse()
        body = r.read()
        conn.close()
        return {n["name"] for n in json.loads(body)} if r.status == 200 else None
    except (OSError, ValueError):
        return None


def web_until(url: str, predicate, timeout: float = PHASE_TIMEOUT) -> float | None:
    """Poll ``GET /api/nodes`` until ``predicate(names)``; the time it held, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = web_nodes(url)
        if names is not None and predicate(names):
            return time.time()
        time.sleep(0.05)
    return None


class SSE(threading.Thread):
    """An HTTP client following ``GET /api/live?nodes=...``: arrival minus publish times."""

    def __init__(self, url: str, nodes: list[str]) -> None:
        super().__init__(daemon=True)
        self.port = int(url.rsplit(":", 1)[1])
        self.nodes = nodes
        self.latency: list[tuple[float, float]] = []  # (arrival, ms)
        self.events: list[tuple[float, str, str]] = []  # (arrival, event, node) but data
        self.stop = False
        self.conn: http.client.HTTPConnection | None = None

    def run(self) -> None:
        while not self.stop:
            try:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.conn.request(
                    "GET", "/api/live?nodes=" + ",".join(self.nodes), headers={"accept": "text/event-stream"}
                )
                r = self.conn.getresponse()
                event = None
                while not self.stop:
                    line = r.readline()
                    if not line:
                        break
                    line = line.decode().rstrip("\n")
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        self._on(event, json.loads(line[6:]))
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if not self.stop:
                self.events.append((time.time(), "reconnect", ""))
                time.sleep(0.5)

    def _on(self, event: str | None, d: dict) -> None:
        now = time.time()
        if event == "data":
            ts = [t for tl in d.get("timeline", {}).values() for t in tl.get("t", [])]
            for t in ts:
                self.latency.append((now, (now - t) * 1e3))
        else:
            self.events.append((now, event or "", d.get("name", d.get("node", ""))))

    def since(self, t: float) -> list[float]:
        return [ms for at, ms in self.latency if at >= t]

    def close(self) -> None:
        self.stop = True
        if self.conn is not None:
            try:
                self.conn.sock.shutdown(2)  # type: ignore[union-attr]
            except OSError:
                pass


class Caller(threading.Thread):
    """A consumer calling ``get_data`` on archive nodes in a loop; counts errors."""

    def __init__(self, nodes: list[str]) -> None:
        super().__init__(daemon=True)
        self.nodes = nodes
        self.ok = 0
        self.errors: list[str] = []
        self.stop = False

    def run(self) -> None:
        from sisock.client import ClientError, connect

        with connect(timeout=30) as c:
            k = 0
            while not self.stop:
                node = self.nodes[k % len(self.nodes)]
                k += 1
                try:
                    c.get_data(node, ["stage_temp"], -3600, 0, progress=False)
                    self.ok += 1
                except ClientError as exc:
                    self.errors.append(f"{node}: {exc}")
                time.sleep(0.05)


# -- CPU -----------------------------------------------------------------------------


def tree(p: subprocess.Popen) -> list:
    """psutil processes of ``p`` and its children (Crossbar runs its router in a child)."""
    import psutil

    try:
        root = psutil.Process(p.pid)
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def cpu_of(groups: dict[str, list], seconds: float) -> dict[str, float]:
    """CPU use (fraction of one core) of each group of processes over ``seconds``."""
    import psutil

    def total(procs) -> float:
        s = 0.0
        for q in procs:
            try:
                t = q.cpu_times()
                s += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return s

    before = {k: total(v) for k, v in groups.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    dt = time.monotonic() - t0
    return {k: (total(v) - before[k]) / dt for k, v in groups.items()}


def stuck(stack: Stack) -> None:
    """Say what the web bridge is doing (it did not answer within 30 s)."""
    print("the web bridge did not answer GET /api/nodes within 30 s", flush=True)
    print("  CPU over 2 s:", cpu_of({"web": tree(stack.web)}, 2.0), flush=True)
    print("  /api/status:", web_nodes(stack.web_url) is not None, flush=True)
    spy = Path(sys.executable).parent / "py-spy"
    if spy.exists():
        print(
            subprocess.run(
                [str(spy), "dump", "--pid", str(stack.web.pid)],  # type: ignore[union-attr]
                capture_output=True,
                text=True,
            ).stdout,
            flush=True,
        )


def rss_mib(procs: list) -> float:
    """Resident memory of ``procs`` together, MiB."""
    import psutil

    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


# -- browser ---------------------------------------------------------------------------


def browser_phase(url: str, follow: list[str], seconds: float, all_nodes: list[str]) -> dict:
    """Live samples drawn in headless Chromium, and the picker with every node."""
    from playwright.sync_api import sync_playwright

    out: dict = {}
    panels = "|".join(",".join(f"{n}:x" for n in follow[i : i + 5]) for i in range(0, len(follow), 5))
    with sync_playwright() as p:
        browser = launch(p)
        try:
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            t0 = time.time()
            page.goto(f"{url}/?panels={panels}&range=15m", timeout=PHASE_TIMEOUT * 1000)
            page.wait_for_function(
                "() => window.sisock && window.sisock.ready", timeout=PHASE_TIMEOUT * 1000, polling=100
            )
            out["page_ready_s"] = time.time() - t0
            # every field list loaded (the picker's own count, where the page has one)
            t_f = time.time()
            try:
                page.wait_for_function(
                    f"() => window.sisock.picker && window.sisock.picker.loaded >= {len(all_nodes)}",
                    timeout=PHASE_TIMEOUT * 1000,
                    polling=100,
                )
                out["fields_loaded_s"] = time.time() - t0
            except Exception:
                out["fields_loaded_s"] = None
            out["fields_wait_s"] = time.time() - t_f
            page.wait_for_function("() => window.sisock.live.length > 5", timeout=PHASE_TIMEOUT * 1000, polling=100)
            n0 = page.evaluate("window.sisock.live.length")
            time.sleep(seconds)
            live = page.evaluate(f"window.sisock.live.slice({n0})")
            out["pixel_ms"] = [(x["drawnAt"] - x["t"]) * 1e3 for x in live]
            # the picker: every node listed, a search keystroke rendered
            page.wait_for_function(
                f"() => document.querySelectorAll('#nodes .node').length >= {len(all_nodes)}",
                timeout=PHASE_TIMEOUT * 1000,
                polling=200,
            )
            out["picker_nodes"] = page.evaluate("document.querySelectorAll('#nodes .node').length")
            # a name no other name starts with (lvK_15: there is no lvK_150)
            target = next((n for n in all_nodes if n.endswith("_15")), all_nodes[-1])
            ms, sync = [], []
            for _ in range(10):
                page.fill("#search", "")
                page.wait_for_timeout(200)
                # (the keystroke's own handler, the next frame painted)
                a, b = page.evaluate(
                    """(q) => new Promise((done) => {
                        const s = document.querySelector('#search');
                        const t0 = performance.now();
                        s.value = q;
                        s.dispatchEvent(new Event('input'));
                        const t1 = performance.now();
                        const check = () => {
                          const shown = [...document.querySelectorAll('#nodes .node')];
                          if (shown.length === 1) requestAnimationFrame(() => done([t1 - t0, performance.now() - t0]));
                          else setTimeout(check, 5);
                        };
                        check();
                    })""",
                    target,
                )
                sync.append(a)
                ms.append(b)
            out["search_sync_ms"] = sync
            out["search_ms"] = ms
            ctx.close()
        finally:
            browser.close()
    return out


# -- the run -----------------------------------------------------------------------------


def make_archives(root: Path, n: int) -> list[Path]:
    """``n`` copies of one small generated archive (half a day, 0.2 Hz)."""
    first = root / "arch0"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sisock",
            "generate",
            str(first),
            "--days",
            "0.5",
            "--fast-hours",
            "0",
            "--burst-rate",
            "0",
            "--mid-rate",
            "0.2",
            "--slow-rate",
            "0.02",
            "--rotate-seconds",
            "86400",
            "--overwrite",
        ],
        check=True,
        capture_output=True,
    )
    out = [first]
    for i in range(1, n):
        shutil.copytree(first, root / f"arch{i}")
        out.append(root / f"arch{i}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Run every phase once and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--live", type=int, default=150, help="live nodes (1-10 Hz)")
    ap.add_argument("--archive", type=int, default=50, help="archive nodes")
    ap.add_argument("--procs", type=int, default=8, help="node processes (at most 10)")
    ap.add_argument("--follow", type=int, default=20, help="live nodes the dashboard follows")
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each steady interval")
    ap.add_argument("--no-browser", action="store_true", help="skip headless Chromium")
    ap.add_argument("--restarts-only", action="store_true", help="only the start, the steady CPU and the two restarts")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument(
        "--keep", type=Path, metavar="DIR", help="work in DIR (made fresh) and keep it: logs of every process"
    )
    args = ap.parse_args(argv)
    if not 1 <= args.procs <= 10:
        ap.error(f"--procs must be between 1 and 10, got {args.procs}")
    res: dict = {"load_start": loadavg()}
    t_begin = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sisock-scale-") as tmp:
        root = Path(tmp)
        if args.keep:
            shutil.rmtree(args.keep, ignore_errors=True)
            args.keep.mkdir(parents=True)
            root = args.keep
        home = root / "home"
        home.mkdir()
        archives = make_archives(root, args.archive) if args.archive else []
        stack = Stack(home)
        try:
            run(stack, args, archives, res)
        finally:
            stack.stop()
    res["load_end"] = loadavg()
    res["wall_s"] = time.monotonic() - t_begin
    report(res, args)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=float))
    return 0


def run(stack: Stack, args, archives: list[Path], res: dict) -> None:
    """The phases, in order (see the module docstring)."""
    stack.start()
    w = Watch()
    archive_procs = max(1, round(args.procs * args.archive / max(1, args.live + args.archive))) if args.archive else 0
    live_procs = args.procs - archive_procs
    names: list[str] = []
    rates: dict[str, float] = {}
    # the router's cost per publication, one publisher at a time, no subscriber:
    # a node on its own live topic (the router asks the authorizer each time), and
    # the hub's account on a topic its static permission allows (no authorizer)
    res["router_rss_start_mib"] = rss_mib(tree(stack.router))
    res["publish_cost"] = publish_cost(stack, args.seconds / 2)
    # archive nodes first: the router's idle cost with sessions that do not publish
    t0 = time.time()
    for k in range(archive_procs):
        dirs = archives[k::archive_procs]
        stack.host("archive", "--prefix", f"ar{k}", *map(str, dirs))
        names += [f"ar{k}_{i}" for i in range(len(dirs))]
    if archive_procs:
        w.until(lambda ls: set(names) <= set(ls), PHASE_TIMEOUT * 2)
        time.sleep(2)
        res["router_idle_cpu"] = cpu_of({"router": tree(stack.router)}, args.seconds / 2)["router"]
    live_names: list[str] = []
    for k in range(live_procs):
        count = args.live // live_procs + (1 if k < args.live % live_procs else 0)
        stack.host("live", "--prefix", f"lv{k}", "--count", str(count), "--seed", str(k))
        for i, r in enumerate(rates_for(count, 1, 10, k)):
            rates[f"lv{k}_{i}"] = r
            live_names.append(f"lv{k}_{i}")
    names += live_names
    t_all = w.until(lambda ls: set(names) <= set(ls), PHASE_TIMEOUT * 2)
    res["start_all_listed_s"] = None if t_all is None else t_all - t0
    res["nodes"] = len(names)
    res["publish_hz"] = sum(rates.values())
    follow = sorted(live_names, key=lambda n: -rates[n])[: args.follow]
    res["follow_hz"] = sum(rates[n] for n in follow)
    time.sleep(3)

    # steady state: CPU and the SSE latency over the same interval
    sse = SSE(stack.web_url, follow)
    sse.start()
    deadline = time.monotonic() + 30
    while not sse.latency and time.monotonic() < deadline:
        time.sleep(0.1)
    t_sse = time.time()
    hosts = [p for p in stack.procs if p not in (stack.router, stack.hub, stack.web)]
    groups = {
        "router": tree(stack.router),
        "hub": tree(stack.hub),
        "web": tree(stack.web),
        "nodes": [q for h in hosts for q in tree(h)],
    }
    res["load_steady"] = loadavg()
    res["cpu"] = cpu_of(groups, args.seconds)
    res["rss_mib"] = {k: rss_mib(v) for k, v in groups.items()}
    res["live_procs"] = live_procs
    res["archive_procs"] = archive_procs
    res["sse_ms"] = sse.since(t_sse)
    res["sse_rate"] = len(res["sse_ms"]) / args.seconds

    # the same, with one more consumer subscribed to every live topic (an archiver):
    # now every publication is authorized and delivered
    archiver = Archiver(stack)
    n0, t0 = archiver.received(), time.monotonic()
    res["cpu_all_delivered"] = cpu_of(groups, args.seconds)
    time.sleep(1.2)  # the archiver's next report
    res["all_delivered_hz"] = (archiver.received() - n0) / (time.monotonic() - t0)
    archiver.stop()

    # GET /api/nodes, and the hub's get_data_node as the peer
    conn = http.client.HTTPConnection("127.0.0.1", stack.web_port, timeout=30)
    api = []
    for _ in range(60):
        t = time.perf_counter()
        try:
            conn.request("GET", "/api/nodes")
            r = conn.getresponse()
            body = r.read()
        except TimeoutError:
            stuck(stack)
            raise
        api.append((time.perf_counter() - t) * 1e3)
    res["api_nodes_ms"] = api
    res["api_nodes_count"] = len(json.loads(body))
    status = []  # the bridge's own answer, no call to the hub: its floor under this load
    for _ in range(60):
        t = time.perf_counter()
        conn.request("GET", "/api/status")
        conn.getresponse().read()
        status.append((time.perf_counter() - t) * 1e3)
    res["api_status_ms"] = status
    conn.close()
    hub_ms = []
    for _ in range(60):
        t = time.perf_counter()
        w.client.nodes()
        hub_ms.append((time.perf_counter() - t) * 1e3)
    res["hub_list_ms"] = hub_ms

    # the dashboard
    if not args.no_browser and not args.restarts_only:
        try:
            res["browser"] = browser_phase(stack.web_url, follow, args.seconds, names)
        except Exception as exc:
            res["browser"] = {"error": f"{type(exc).__name__}: {exc}"}

    # a node joining and leaving under load; other consumers must see no error
    caller = Caller([n for n in names if n.startswith("ar")] or names[:5])
    caller.start()
    for how in () if args.restarts_only else ("SIGTERM", "SIGKILL"):
        name = f"joiner{how[3:].lower()}_0"
        t_spawn = time.time()
        p = stack.host("live", "--prefix", name[:-2], "--count", "1", "--rates", "5,5")
        t_listed = w.until(lambda ls: name in ls)
        t_web = web_until(stack.web_url, lambda ns: name in ns)
        joined = stack.joined.get(name)
        res[f"join_{how}"] = {
            "spawn_to_listed_s": None if t_listed is None else t_listed - t_spawn,
            "joined_to_added_event_ms": None
            if joined is None or name not in w.added
            else (w.added[name] - joined) * 1e3,
            "joined_to_web_ms": None if joined is None or t_web is None else (t_web - joined) * 1e3,
        }
        time.sleep(1)
        t_kill = time.time()
        os.killpg(p.pid, getattr(signal, how))
        t_gone = w.until(lambda ls: name not in ls)
        t_web_gone = web_until(stack.web_url, lambda ns: name not in ns)
        res[f"leave_{how}"] = {
            "kill_to_unlisted_ms": None if t_gone is None else (t_gone - t_kill) * 1e3,
            "kill_to_event_ms": None if name not in w.subtracted else (w.subtracted[name] - t_kill) * 1e3,
            "kill_to_web_ms": None if t_web_gone is None else (t_web_gone - t_kill) * 1e3,
        }
        p.wait(10)
        stack.procs.remove(p)
    caller.stop = True
    caller.join(30)
    res["join_leave_caller"] = {"ok": caller.ok, "errors": caller.errors[:5], "n_errors": len(caller.errors)}
    res["sse_events_during_join_leave"] = [e for e in sse.events if e[1] not in ("hello",)]

    # the hub restarted
    everyone = set(names)
    t0, _ = stack.restart("hub")
    t_names = w.until(lambda ls: everyone <= set(ls))
    t_desc = w.until(lambda ls: everyone <= set(ls) and all(ls[n] for n in everyone))
    announced = [t for t in w.hub_started if t > t0]
    res["hub_restart"] = {
        "to_all_listed_s": None if t_names is None else t_names - t0,
        "to_all_described_s": None if t_desc is None else t_desc - t0,
        "to_announced_s": announced[0] - t0 if announced else None,
    }

    # the router restarted: the hub and the bridge list everyone again, samples flow again
    n_events = len(sse.events)
    t0, proc = stack.restart("router")
    wait_port(stack.port, 60, proc)
    t_port = time.time()
    t_names = w.until(lambda ls: everyone <= set(ls))
    t_web = web_until(stack.web_url, lambda ns: everyone <= ns)
    t_sse = None
    deadline = time.monotonic() + PHASE_TIMEOUT
    while time.monotonic() < deadline:
        back = [at for at, _ in sse.latency if at > t_port]
        if back:
            t_sse = back[0]
            break
        time.sleep(0.05)
    joined = [t - t_port for n, t in stack.joined.items() if n in everyone and t > t_port]
    added = [t - t_port for n, t in w.added.items() if n in everyone and t > t_port]
    hub_up = [t - t_port for t in w.hub_started if t > t_port]
    res["router_restart_nodes"] = {
        "port_to_hub_started_s": hub_up[0] if hub_up else None,
        "port_to_session_joined_s": [pct(joined, q) for q in (0.5, 0.9, 1.0)] if joined else None,
        "port_to_added_event_s": [pct(added, q) for q in (0.5, 0.9, 1.0)] if added else None,
    }
    res["router_restart"] = {
        "stop_s": stack.stopped_in,
        "start_to_port_s": t_port - t0,
        "port_to_hub_lists_all_s": None if t_names is None else t_names - t_port,
        "port_to_web_lists_all_s": None if t_web is None else t_web - t_port,
        "port_to_first_live_sample_s": None if t_sse is None else t_sse - t_port,
    }
    time.sleep(3)
    res["sse_events_router_restart"] = sorted({e[1] for e in sse.events[n_events:]})
    sse.close()
    w.client.close()
    hub_log = next(iter(sorted(stack.home.glob("*-hub.log"))), None)
    router_logs = sorted(stack.home.glob("*-router.log"))
    res["router_log_warnings"] = sum(f.read_text(errors="replace").count("refusing") for f in router_logs)
    res["hub_log"] = str(hub_log)


PEER_RATE = 1000.0


class Archiver:
    """A child process subscribed to every live topic (``scale_nodes.py subscriber``)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.proc = stack.host("subscriber")
        deadline = time.monotonic() + 30
        while self.proc.pid not in stack.counts and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)  # joined and subscribed

    def received(self) -> int:
        """Events received so far (reported every second)."""
        return self.stack.counts.get(self.proc.pid, 0)

    def stop(self) -> None:
        self.stack.stop_proc(self.proc)
        self.stack.procs.remove(self.proc)


def publish_cost(stack: Stack, seconds: float) -> dict:
    """Router CPU (fraction of a core) idle, then with one 1,000/s publisher of each kind,
    each publication delivered to one subscriber (a publication nobody subscribes to
    is dropped by the router before it is even authorized)."""
    archiver = Archiver(stack)
    try:
        out: dict = {"idle": cpu_of({"r": tree(stack.router)}, seconds)["r"]}
        for role in ("server", "hub"):
            p = stack.host("publisher", "--role", role, "--rate", str(PEER_RATE), "--name", f"pub_{role}")
            time.sleep(4)  # joined, listed and publishing
            n0, t0 = archiver.received(), time.monotonic()
            out[role] = cpu_of({"r": tree(stack.router)}, seconds)["r"]
            time.sleep(1.2)  # the archiver's next report
            out[role + "_delivered_hz"] = (archiver.received() - n0) / (time.monotonic() - t0)
            stack.stop_proc(p)
            stack.procs.remove(p)
    finally:
        archiver.stop()
    return out


def report(res: dict, args) -> None:
    """Print the figures as a table."""

    def s(x, fmt="{:.2f}"):
        return "n/a" if x is None else fmt.format(x)

    cpu = res.get("cpu", {})
    pc = res.get("publish_cost", {})
    all_cpu = res.get("cpu_all_delivered", {}).get("router", 0.0)
    rate = res.get("publish_hz", 0.0)
    router_busy = cpu.get("router", 0.0) - res.get("router_idle_cpu", 0.0)
    rows = [
        ("nodes listed at start (cold)", f"{res.get('nodes')} nodes in {s(res.get('start_all_listed_s'))} s"),
        ("publications/s (sum of node rates)", f"{rate:.0f}"),
        ("router CPU, 50 archive nodes idle", f"{100 * res.get('router_idle_cpu', 0):.1f} %"),
        ("router CPU, steady state", f"{100 * cpu.get('router', 0):.1f} % of a core"),
        (
            "  peer: 1,000 publications/s by one node",
            f"{100 * (pc.get('server', 0) - pc.get('idle', 0)):.1f} % of a core over idle "
            f"(authorizer asked each time; {pc.get('server_delivered_hz', 0):.0f}/s delivered)",
        ),
        (
            "  peer: 1,000 publications/s, static permission",
            f"{100 * (pc.get('hub', 0) - pc.get('idle', 0)):.1f} % of a core over idle "
            f"(hub account, no authorizer; {pc.get('hub_delivered_hz', 0):.0f}/s delivered)",
        ),
        (
            "router CPU per 1,000 publications/s",
            f"{1000 * router_busy / max(rate, 1) * 100:.1f} % "
            f"of a core (over idle; {res.get('follow_hz', 0):.0f}/s of them have a subscriber)",
        ),
        (
            "router CPU, every publication also to an archiver",
            f"{100 * all_cpu:.1f} % of a core "
            f"({res.get('all_delivered_hz', 0):.0f} events/s received) = "
            f"{100 * 1000 * (all_cpu - res.get('router_idle_cpu', 0)) / max(rate, 1):.1f} "
            "% per 1,000 publications/s",
        ),
        ("hub CPU, steady state", f"{100 * cpu.get('hub', 0):.1f} %"),
        ("router resident memory before the nodes", f"{res.get('router_rss_start_mib', 0):.0f} MiB"),
        (
            "resident memory: router / hub / web / nodes",
            " / ".join(f"{res.get('rss_mib', {}).get(k, 0):.0f}" for k in ("router", "hub", "web", "nodes"))
            + f" MiB ({res.get('live_procs')} live + {res.get('archive_procs')} archive processes)",
        ),
        (
            "web bridge CPU, steady state",
            f"{100 * cpu.get('web', 0):.1f} % ({args.follow} nodes followed, {res.get('follow_hz', 0):.0f} samples/s)",
        ),
        ("node processes CPU, together", f"{100 * cpu.get('nodes', 0):.1f} %"),
        ("GET /api/nodes", dist(res.get("api_nodes_ms", [])) + f" [{res.get('api_nodes_count')} nodes]"),
        ("  peer: hub get_data_node via client", dist(res.get("hub_list_ms", []))),
        ("  peer: GET /api/status (no hub call)", dist(res.get("api_status_ms", []))),
        ("publish -> SSE at HTTP client", dist(res.get("sse_ms", []))),
    ]
    b = res.get("browser", {})
    if "error" in b:
        rows.append(("browser", b["error"]))
    elif b:
        rows += [
            ("publish -> drawn in Chromium", dist(b.get("pixel_ms", []))),
            ("dashboard ready (200 nodes)", s(b.get("page_ready_s")) + " s"),
            ("  every field list loaded", s(b.get("fields_loaded_s")) + " s"),
            ("search keystroke -> picker rendered", dist(b.get("search_ms", []))),
            ("  of which the input handler", dist(b.get("search_sync_ms", []))),
        ]
    for how in ("SIGTERM", "SIGKILL"):
        j, lv = res.get(f"join_{how}", {}), res.get(f"leave_{how}", {})
        rows += [
            (f"join ({how} run): spawn -> listed", s(j.get("spawn_to_listed_s")) + " s"),
            (
                "  session joined -> added event / web",
                f"{s(j.get('joined_to_added_event_ms'), '{:.0f}')} / {s(j.get('joined_to_web_ms'), '{:.0f}')} ms",
            ),
            (
                f"leave by {how}: -> unlisted / event / web",
                f"{s(lv.get('kill_to_unlisted_ms'), '{:.0f}')} / "
                f"{s(lv.get('kill_to_event_ms'), '{:.0f}')} / "
                f"{s(lv.get('kill_to_web_ms'), '{:.0f}')} ms",
            ),
        ]
    c = res.get("join_leave_caller", {})
    rows.append(
        (
            "other consumers during join/leave",
            f"{c.get('ok')} get_data ok, {c.get('n_errors')} errors; SSE events "
            f"{[e[1] for e in res.get('sse_events_during_join_leave', [])]}",
        )
    )
    h = res.get("hub_restart", {})
    rows.append(
        ("hub restart -> all listed / described", f"{s(h.get('to_all_listed_s'))} / {s(h.get('to_all_described_s'))} s")
    )
    rows.append(("  hub restart -> announced (start, rebuild, register)", s(h.get("to_announced_s")) + " s"))
    r = res.get("router_restart", {})
    rows += [
        ("router restart: SIGTERM -> exited", s(r.get("stop_s")) + " s"),
        ("  started -> port open", s(r.get("start_to_port_s")) + " s"),
        ("  port open -> hub lists all", s(r.get("port_to_hub_lists_all_s")) + " s"),
        ("  port open -> /api/nodes lists all", s(r.get("port_to_web_lists_all_s")) + " s"),
        ("  port open -> first live sample (SSE)", s(r.get("port_to_first_live_sample_s")) + " s"),
        ("  SSE events seen", str(res.get("sse_events_router_restart"))),
        (
            "  port open -> hub announced itself",
            s(res.get("router_restart_nodes", {}).get("port_to_hub_started_s")) + " s",
        ),
        (
            "  port open -> node sessions joined (p50/p90/max)",
            " / ".join(s(x) for x in res.get("router_restart_nodes", {}).get("port_to_session_joined_s") or []) + " s",
        ),
        (
            "  port open -> nodes re-added (p50/p90/max)",
            " / ".join(s(x) for x in res.get("router_restart_nodes", {}).get("port_to_added_event_s") or []) + " s",
        ),
        ("router log 'refusing' lines", str(res.get("router_log_warnings"))),
    ]
    print(
        f"\nbench_scale: {res.get('nodes')} nodes ({args.live} live, {args.archive} archive) in "
        f"{args.procs} processes; load average start {res['load_start']}, steady "
        f"{res.get('load_steady')}, end {res['load_end']}; {res['wall_s']:.0f} s\n"
    )
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


if __name__ == "__main__":
    sys.exit(main())
