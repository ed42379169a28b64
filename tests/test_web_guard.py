"""``sisock web`` as an attacker on the same machine sees it: raw sockets against
a real bridge on the real router.

Covers bodies refused before they are stored, bounded ``/query`` work while
one client floods, the ``Host`` allowlist (DNS rebinding), the token kept
out of URLs, Referers and logs, the security headers, malformed input that
must be a 400, slow clients, and the router's own HTTP page.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import statistics
import threading
import time
from pathlib import Path

import pytest

from conftest import Proc, Stack, free_port, http, wait_for, wait_port

pytestmark = pytest.mark.timeout(300)

TOKEN = "guard-test-token-5b1d"


class Reply:
    """An HTTP answer read from a raw socket."""

    def __init__(self, status: int, headers: dict[str, list[str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (case-insensitive), or None."""
        values = self.headers.get(name.lower())
        return values[-1] if values else None

    def json(self) -> dict:
        """The body as JSON."""
        return json.loads(self.body)


def read_reply(sock: socket.socket, timeout: float = 30.0) -> Reply | None:
    """Read one HTTP answer (head and ``Content-Length`` body); None if the
    connection ends or ``timeout`` passes before a whole head arrives."""
    sock.settimeout(timeout)
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.setdefault(k.strip().lower(), []).append(v.strip())
        length = int(headers.get("content-length", ["0"])[-1])
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    except (socket.timeout, ConnectionError):
        return None
    return Reply(int(lines[0].split()[1]), headers, rest[:length])


def exchange(port: int, data: bytes, timeout: float = 30.0) -> Reply | None:
    """Send ``data`` on a new connection and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return read_reply(s, timeout)


def request(
    method: str, path: str, port: int, headers: dict[str, str] | None = None, body: bytes = b"", host: str | None = None
) -> bytes:
    """A raw HTTP/1.1 request (``Host: 127.0.0.1:port`` unless ``host`` is given)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}", "Connection: close"]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def temp_files(pid: int, tmpdir: Path) -> list[str]:
    """Files under ``tmpdir`` that process ``pid`` holds open (deleted ones included)."""
    out = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(tmpdir)):
            out.append(target)
    return out


class Bridge:
    """A ``sisock web`` process of this module."""

    def __init__(self, proc: Proc, port: int, tmpdir: Path) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.tmpdir = tmpdir

    @property
    def pid(self) -> int:
        """The bridge's process id."""
        return self.proc.pid


def start_bridge(stack: Stack, tmp: Path, name: str, *args: str) -> Bridge:
    """Start ``sisock web ARGS`` with its own ``TMPDIR``; wait until it lists the demo nodes."""
    tmpdir = tmp / f"{name}-tmp"
    tmpdir.mkdir()
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    proc = stack.start(name, "web", "--port", str(port), *args, env=env)
    wait_port(port, 30, proc.proc)
    bridge = Bridge(proc, port, tmpdir)
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def ready() -> bool:
        status, _, body = http("GET", bridge.url + "/api/nodes", headers=auth, timeout=5)
        return status == 200 and "webarch" in {n["name"] for n in json.loads(body)}

    wait_for(ready, 60, f"bridge {name} never listed the nodes:\n{proc.log()}")
    return bridge


@pytest.fixture(scope="module")
def guarded(stack, web_demo, tmp_path_factory):
    """A bridge with ``--token`` and ``--max-values 1000``, its own TMPDIR."""
    bridge = start_bridge(
        stack, tmp_path_factory.mktemp("guard"), "web-guarded", "--token", TOKEN, "--max-values", "1000"
    )
    yield bridge
    bridge.proc.stop()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


# -- 3. bodies --------------------------------------------------------------------


def test_declared_body_over_limit_refused_before_stored(guarded):
    """A 60 MiB Content-Length gets its 413 before the body is sent, and no
    byte of it reaches a temporary file."""
    head = request(
        "POST", "/query", guarded.port, {**AUTH, "Content-Type": "application/json", "Content-Length": str(60 << 20)}
    )
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=30) as s:
        s.sendall(head)
        s.sendall(b"[" + b" " * (256 << 10))  # part of the body: what old code stored
        reply = read_reply(s, 20)  # a bridge that reads the body first answers nothing
        held = temp_files(guarded.pid, guarded.tmpdir)  # (while the request is still open)
    assert held == [], f"the bridge stored the body in {held}"
    assert reply is not None, "no answer before the body was sent: the body is read first"
    assert reply.status == 413 and reply.json()["error"] == "body_too_large"
    assert http("GET", guarded.url + "/api/nodes", headers=AUTH)[0] == 200


def test_unauthenticated_body_refused_before_stored(guarded):
    """With --token, an 8 MiB body from a caller without the token is answered
    401 at once; nothing of it is stored."""
    head = request("POST", "/query", guarded.port, {"Content-Type": "application/json", "Content-Length": str(8 << 20)})
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=30) as s:
        s.sendall(head)
        s.sendall(b"{" + b" " * (200 << 10))
        reply = read_reply(s, 20)
        held = temp_files(guarded.pid, guarded.tmpdir)
    assert held == [], f"the bridge stored an unauthenticated body in {held}"
    assert reply is not None, "no answer before the body was sent"
    assert reply.status == 401 and reply.json()["error"] == "unauthorized"
    wrong = request("POST", "/search", guarded.port, {"Authorization": "Bearer wrong", "Content-Length": str(2 << 20)})
    reply = exchange(guarded.port, wrong, 20)
    assert reply is not None and reply.status == 401


def test_chunked_body_cut_at_limit(guarded):
    """A chunked body is kept in memory (no temporary file) and answered 413
    as soon as it passes 1 MiB, without waiting for its end."""
    head = request(
        "POST", "/query", guarded.port, {**AUTH, "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    )
    chunk = b"%x\r\n%s\r\n" % (64 << 10, b" " * (64 << 10))
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=30) as s:
        s.sendall(head)
        for _ in range(8):  # 512 KiB: under the limit
            s.sendall(chunk)
        try:
            for _ in range(12):  # past 1 MiB; never the final 0-chunk
                s.sendall(chunk)
        except ConnectionError:
            pass
        reply = read_reply(s, 20)  # a bridge waiting for the body's end answers nothing
        held = temp_files(guarded.pid, guarded.tmpdir)
    assert held == [], f"the bridge stored a chunked body in {held}"
    assert reply is not None, "no answer until the chunked body ends"
    assert reply.status == 413 and reply.json()["error"] == "body_too_large"


def test_small_body_still_served(guarded):
    """An accepted body (chunked or not) is answered as before."""
    body = json.dumps({"target": "stage"}).encode()
    reply = exchange(
        guarded.port, request("POST", "/search", guarded.port, {**AUTH, "Content-Type": "application/json"}, body)
    )
    assert reply is not None and reply.status == 200 and "webarch::stage_temp" in reply.json()
    head = request("POST", "/search", guarded.port, {**AUTH, "Transfer-Encoding": "chunked"})
    reply = exchange(guarded.port, head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    assert reply is not None and reply.status == 200 and "webarch::stage_temp" in reply.json()


# -- 4. /query work ------------------------------------------------------------------


def query_body(
    targets: list[str], hours: float = 6, max_points: int | None = 500, methods: list[str | None] | None = None
) -> bytes:
    """A Grafana /query body over the last ``hours`` hours."""
    now = time.time()

    def iso(t):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    entries = []
    for i, t in enumerate(targets):
        e: dict = {"target": t}
        if methods and methods[i % len(methods)]:
            e["data"] = {"method": methods[i % len(methods)]}
        entries.append(e)
    doc: dict = {"range": {"from": iso(now - hours * 3600), "to": iso(now)}, "targets": entries}
    if max_points:
        doc["maxDataPoints"] = max_points
    return json.dumps(doc).encode()


def node_calls(url: str, headers: dict | None = None) -> int:
    """Node calls the bridge has started so far (``/api/status``)."""
    return json.loads(http("GET", url + "/api/status", headers=headers)[2])["node_calls"]["started"]


def test_query_caps_unknown_nodes_and_whole_answer(web_demo, guarded):
    """/query refuses too many targets or (node, method) pairs with a 400 naming
    the limit; unknown nodes are answered without a node call; the value limit
    holds for the whole answer, not per node."""
    many = query_body([f"webarch::f{i}" for i in range(20_000)])
    status, _, body = http("POST", web_demo.url + "/query", many)
    doc = json.loads(body)
    assert status == 400 and "targets" in doc["message"] and "limit" in doc["message"], doc

    pairs = query_body([f"node{i}::x" for i in range(40)])
    status, _, body = http("POST", web_demo.url + "/query", pairs)
    assert status == 400 and "pairs" in json.loads(body)["message"]

    before = node_calls(web_demo.url)
    unknown = query_body([f"ghost{i}::x" for i in range(12)])
    status, _, body = http("POST", web_demo.url + "/query", unknown)
    out = json.loads(body)
    assert status == 200 and len(out) == 12
    assert all("ghost" in o["meta"]["error"] and o["datapoints"] == [] for o in out)
    assert node_calls(web_demo.url) == before, "unknown nodes were called through the router"

    # --max-values 1000: each target alone fits (about 600 values), both together do not
    two = query_body(["webarch::stage_temp", "webwx::temperature"], hours=10, max_points=600)
    status, _, body = http("POST", guarded.url + "/query", two, headers=AUTH)
    doc = json.loads(body)
    assert status == 413 and doc["error"] == "too_much_data" and doc["limit"] == 1000, doc
    one = query_body(["webarch::stage_temp"], hours=10, max_points=600)
    status, _, body = http("POST", guarded.url + "/query", one, headers=AUTH)
    assert status == 200 and len(json.loads(body)[0]["datapoints"]) > 0


def flood_phase(url: str, bodies: list[bytes], seconds: float, small: bytes) -> dict:
    """Flood ``/query`` with ``bodies`` (one connection each, in a loop) while
    another client times ``GET /api/status`` and a small ``/query``.

    Returns
    -------
    dict
        ``latencies`` ({kind: [seconds]}), ``codes`` (the other client's
        statuses), ``flood`` (the flood's statuses), ``flood_done``
        (monotonic times of flood answers), ``other_done`` (when the other
        client stopped).
    """
    stop = threading.Event()
    flood: list[int] = []
    flood_done: list[float] = []

    def run(body: bytes) -> None:
        while not stop.is_set():
            status, _, _ = http("POST", url + "/query", body, timeout=240)
            flood.append(status)
            flood_done.append(time.monotonic())

    threads = [threading.Thread(target=run, args=(b,), daemon=True) for b in bodies]
    for t in threads:
        t.start()
    time.sleep(1.0)
    latencies: dict[str, list[float]] = {"status": [], "query": []}
    codes = []
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        for kind, (method, path, body) in (
            ("status", ("GET", "/api/status", None)),
            ("query", ("POST", "/query", small)),
        ):
            t0 = time.perf_counter()
            status, _, _ = http(method, url + path, body, timeout=240)
            latencies[kind].append(time.perf_counter() - t0)
            codes.append(status)
        time.sleep(0.05)
    other_done = time.monotonic()
    stop.set()
    for t in threads:
        t.join(240)
    return {"latencies": latencies, "codes": codes, "flood": flood, "flood_done": flood_done, "other_done": other_done}


def report(name: str, phase: dict) -> None:
    """Print the other client's latencies during a flood phase (not asserted)."""
    for kind, values in phase["latencies"].items():
        ordered = sorted(values)
        print(
            f"[{name}] other client {kind}: n={len(values)} "
            f"median={statistics.median(values) * 1000:.1f} ms "
            f"p95={ordered[max(0, int(len(values) * 0.95) - 1)] * 1000:.1f} ms "
            f"max={ordered[-1] * 1000:.1f} ms; flood answers {len(phase['flood'])} "
            f"{sorted(set(phase['flood']))}"
        )


def test_other_client_served_while_one_floods(web_demo):
    """One client floods /query; another client's /api/status and small /query
    keep completing during the flood. Two floods: 20,000-target bodies on
    distinct (unknown) nodes from 2 connections, then bodies at the caps on
    real nodes from 2 connections. Latencies are printed, not asserted."""
    huge = query_body([f"node{i}::x" for i in range(20_000)])
    fields = ["stage_temp", "outside_temp", "humidity", "compressor_on", "cryo_state"]
    methods = [None, "mean", "min", "max", "first", "last", "minmax"]
    at_caps = query_body(
        [f"{n}::{f}" for n in ("webarch", "webwx") for f in fields] * 10, hours=48, max_points=5_000, methods=methods
    )
    small = query_body(["websens::cpu_percent"], hours=0.05, max_points=100)
    phases = {
        "20k targets": flood_phase(web_demo.url, [huge, huge], 8.0, small),
        "at the caps": flood_phase(web_demo.url, [at_caps, at_caps], 8.0, small),
    }
    for name, phase in phases.items():
        report(name, phase)
    for name, phase in phases.items():
        assert set(phase["codes"]) == {200}, (name, phase["codes"])
        assert phase["flood"] and set(phase["flood"]) <= {200, 400, 413}, (name, phase["flood"])
        assert max(phase["flood_done"]) > phase["other_done"], (
            f"{name}: the other client was answered only once the flood ended"
        )
        assert len(phase["latencies"]["status"]) >= 5, f"{name}: the other client was starved"
    assert set(phases["20k targets"]["flood"]) == {400}, "20,000-target bodies were served"


# -- 5. DNS rebinding -------------------------------------------------------------------


def test_foreign_host_refused(web_demo, guarded):
    """A Host other than localhost, 127.0.0.1, [::1] or a configured name is
    refused with 421 JSON, a body included (before it is read)."""
    port = web_demo.port
    for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.evil.example:{port}"):
        reply = exchange(port, request("GET", "/api/nodes", port, host=host))
        assert reply is not None and reply.status == 421, host
        assert reply.json()["error"] == "host_not_allowed" and "--allowed-host" in reply.json()["message"]
        assert b"webarch" not in reply.body
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST"):
        reply = exchange(port, request("GET", "/api/nodes", port, host=host))
        assert reply is not None and reply.status == 200, host
    head = request("POST", "/query", guarded.port, {**AUTH, "Content-Length": str(4 << 20)}, host="attacker.example")
    reply = exchange(guarded.port, head + b"{" + b" " * 1000)
    assert reply is not None and reply.status == 421
    assert temp_files(guarded.pid, guarded.tmpdir) == []
    reply = exchange(port, b"GET /api/nodes HTTP/1.0\r\n\r\n")
    assert reply is not None and reply.status == 421, "a request without Host is answered"
    two = b"GET /api/nodes HTTP/1.1\r\nHost: attacker.example\r\nHost: localhost:%d\r\nConnection: close\r\n\r\n" % port
    reply = exchange(port, two)
    assert reply is not None and reply.status == 421, "two Host headers: judged by the last"


def test_allowed_host_option_and_proxy_https(stack, web_demo, tmp_path):
    """--allowed-host adds names; --trust-proxy makes the token cookie Secure when
    X-Forwarded-Proto says https."""
    bridge = start_bridge(
        stack, tmp_path, "web-named", "--token", TOKEN, "--allowed-host", "sisock.example.org", "--trust-proxy"
    )
    try:
        port = bridge.port
        reply = exchange(port, request("GET", "/api/nodes", port, AUTH, host="sisock.example.org"))
        assert reply is not None and reply.status == 200
        reply = exchange(port, request("GET", "/api/nodes", port, AUTH, host="other.example.org"))
        assert reply is not None and reply.status == 421
        reply = exchange(
            port,
            request(
                "GET",
                f"/?token={TOKEN}",
                port,
                {"Accept": "text/html", "X-Forwarded-Proto": "https"},
                host="sisock.example.org",
            ),
        )
        assert reply is not None and reply.status in (302, 303)
        cookie = reply.header("set-cookie")
        assert "Secure" in cookie and "HttpOnly" in cookie
    finally:
        bridge.proc.stop()


# -- 6. token leaks -----------------------------------------------------------------------


def test_token_leaves_the_url(guarded):
    """?token= on a page sets the HttpOnly cookie and redirects to the same page
    without it (a relative URL, so proxy prefixes hold); answers send
    Referrer-Policy: no-referrer, so the page's URL never travels as a Referer."""
    port = guarded.port
    reply = exchange(
        port,
        request(
            "GET",
            f"/?panels=webarch:stage_temp&token={TOKEN}&range=1d",
            port,
            {"Accept": "text/html,application/xhtml+xml"},
        ),
    )
    assert reply is not None and reply.status in (302, 303), reply and reply.status
    assert reply.header("location") == "./?panels=webarch:stage_temp&range=1d"
    cookie = reply.header("set-cookie")
    assert cookie.startswith(f"sisock_token={TOKEN}") and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower() and "Secure" not in cookie
    assert "Path=/;" not in cookie + ";", "the cookie must stay under a proxy prefix"
    reply = exchange(
        port, request("GET", f"/index.html?token={TOKEN}", port, {"Sec-Fetch-Mode": "navigate", "Accept": "text/html"})
    )
    assert reply is not None and reply.header("location") == "index.html"
    # the page, reloaded with the cookie, has no token in its URL and sends no Referer
    reply = exchange(
        port,
        request("GET", "/?panels=webarch:stage_temp", port, {"Accept": "text/html", "Cookie": f"sisock_token={TOKEN}"}),
    )
    assert reply is not None and reply.status == 200 and b"assets/app.js" in reply.body
    assert reply.header("referrer-policy") == "no-referrer"
    # a script (not a page) may still pass ?token=: answered, not redirected
    status, _, _ = http("GET", guarded.url + f"/api/nodes?token={TOKEN}")
    assert status == 200


def test_token_redacted_from_the_log(guarded):
    """No token reaches the bridge's log, whether it came in the URL (of a page
    or of a script's request) or in a Referer."""
    port = guarded.port
    exchange(port, request("GET", f"/?token={TOKEN}", port, {"Accept": "text/html"}))
    status, _, _ = http("GET", guarded.url + f"/api/nodes?token={TOKEN}")
    assert status == 200
    exchange(
        port, request("GET", "/api/status", port, {**AUTH, "Referer": f"http://127.0.0.1:{port}/?token={TOKEN}&x=1"})
    )
    wait_for(lambda: "/api/status" in guarded.proc.log(), 30, "no access log line")
    log = Path(guarded.proc.log_path).read_text(errors="replace")
    assert TOKEN not in log, "the token is in the bridge's log"
    assert "token=<redacted>" in log


# -- 7. headers and errors --------------------------------------------------------------------


def test_security_headers_on_every_answer(web_demo, guarded):
    """JSON, the dashboard, its assets, errors and refusals all carry CSP,
    nosniff, frame protection and Referrer-Policy."""
    port = web_demo.port
    cases = [
        request("GET", "/api/nodes", port),
        request("GET", "/", port, {"Accept": "text/html"}),
        request("GET", "/assets/app.js", port),
        request("GET", "/nope", port),
        request("GET", "/api/nodes", port, host="attacker.example"),
    ]
    replies = [exchange(port, c) for c in cases]
    replies.append(exchange(guarded.port, request("GET", "/api/nodes", guarded.port)))
    replies.append(exchange(guarded.port, request("POST", "/query", guarded.port, {"Content-Length": str(2 << 20)})))
    for reply in replies:
        assert reply is not None
        csp = reply.header("content-security-policy") or ""
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, reply.status
        assert "script-src 'self'" in csp and "unsafe" not in csp
        assert reply.header("x-content-type-options") == "nosniff"
        assert reply.header("x-frame-options") == "DENY"
        assert reply.header("referrer-policy") == "no-referrer"
    assert [r.status for r in replies] == [200, 200, 200, 404, 421, 401, 401]


def test_nul_in_path_is_400(web_demo):
    """A NUL byte in a path is a 400, not a 500."""
    for path in ("/assets/app.js%00.png", "/index.html%00", "/api/nodes/web%00arch/fields"):
        status, headers, body = http("GET", web_demo.url + path)
        assert status == 400 and json.loads(body)["error"] == "bad_argument", (path, body)
    assert http("GET", web_demo.url + "/api/nodes")[0] == 200


def test_deep_json_is_400(web_demo):
    """A 100,000-deep JSON body is a 400, not a 500."""
    for deep in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        status, _, body = http("POST", web_demo.url + "/query", deep)
        doc = json.loads(body)
        assert status == 400 and doc["error"] == "bad_argument", doc
        assert "Traceback" not in doc["message"]
    assert http("GET", web_demo.url + "/api/nodes")[0] == 200


def test_slowloris_gets_a_deadline(web_demo):
    """A client that trickles its head one byte a second is answered 408 and
    closed before it finishes (it would never finish)."""
    with socket.create_connection(("127.0.0.1", web_demo.port), timeout=30) as s:
        s.sendall(f"GET /api/nodes HTTP/1.1\r\nHost: 127.0.0.1:{web_demo.port}\r\n".encode())
        closed = False
        t_end = time.monotonic() + 90
        s.settimeout(1.0)
        got = b""
        while time.monotonic() < t_end:
            try:
                s.sendall(b"X")
            except OSError:
                closed = True
                break
            try:
                chunk = s.recv(4096)
                if not chunk:
                    closed = True
                    break
                got += chunk
                break
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
    assert closed or got, "the server kept a connection whose head never ends"
    if got:
        assert got.startswith(b"HTTP/1.1 408"), got[:80]


def test_router_hides_its_status_page(stack):
    """The router's port shows no HTML page with the Crossbar version or a worker PID."""
    for path in ("/ws", "/", "/info"):
        try:
            status, headers, body = http("GET", f"http://127.0.0.1:{stack.port}{path}", timeout=10)
        except OSError:  # no HTTP answer at all is fine
            continue
        text = body.decode(errors="replace")
        assert "Crossbar.io" not in text and "PID" not in text, (path, status)
        assert "/" not in headers.get("server", "Crossbar").replace("Crossbar", ""), headers
        version = importlib.metadata.version("crossbar")
        assert version not in text + json.dumps(headers)


def test_over_long_request_line_gets_a_json_414(web_demo):
    """A request line over Twisted's line limit (16 KiB) is answered 414 with the
    JSON error body, not closed without a word; the bridge keeps answering."""
    fields = ",".join(f"f{i}" for i in range(5000))  # ~30 KB of URL
    status, _, body = http("GET", f"{web_demo.url}/api/data?node=x&fields={fields}")
    doc = json.loads(body)
    assert status == 414 and doc["error"] == "uri_too_long", doc
    assert "fewer fields" in doc["message"]
    assert http("GET", web_demo.url + "/api/nodes")[0] == 200
