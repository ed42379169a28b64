"""Operator sign-in and writes through ``sisock web``: HTTP and the dashboard in Chromium.

Real router, real ``sisock serve modbus`` node on a pymodbus device in this
process (the device counts the write requests it receives), a real
``sisock web`` process and Debian's Chromium driven by Playwright.
"""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import free_port, http, wait_for, wait_port
from sisock.site import accounts
from sisock.servers.modbus.simulator import encode
from test_operator_writes import Device, node_config

pytestmark = pytest.mark.timeout(300)

NODE = "wopw"
OPERATOR = "olga"
CONSUMER = "carl"


@pytest.fixture(scope="module")
def accts(stack):
    """An operator and a consumer account (router restarted to load them)."""
    from sisock.client import ClientError, connect

    op = accounts.add(stack.home, OPERATOR, "operator")
    cons = accounts.add(stack.home, CONSUMER, "consumer")
    stack.restart_router()

    def up():
        try:
            with connect(user=OPERATOR, secret=op, timeout=3) as c:
                c.nodes()
            return True
        except ClientError:
            return False

    wait_for(up, 30, "router/hub not back after adding the accounts")
    return {OPERATOR: op, CONSUMER: cons}


@pytest.fixture(scope="module")
def device():
    d = Device()
    yield d
    d.close()


@pytest.fixture(scope="module")
def opweb(stack, accts, device, tmp_path_factory):
    """The Modbus node ``wopw`` on the device and a ``sisock web`` bridge:
    ``{"url", "audit", "web"}``."""
    tmp = tmp_path_factory.mktemp("wopw")
    audit = tmp / "audit.sqlite"
    cfg = tmp / "wopw.toml"
    cfg.write_text(node_config(device.sim.port, NODE, str(audit)))
    nodes = []

    def start_node():
        nodes.append(stack.start("wopw", "serve", "modbus", "--config", str(cfg), "--archive", str(tmp / "archive")))
        return nodes[-1]

    node = start_node()
    port = free_port()
    web = stack.start("opweb", "web", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_port(port, 30, web.proc)
        from sisock.client import ClientError, connect

        def offered():
            try:
                with connect(user=OPERATOR, secret=accts[OPERATOR], timeout=5) as c:
                    return c.points(NODE)
            except ClientError:
                return None

        wait_for(offered, 60, f"node never offered writes:\n{node.log()}")

        def listed():
            status, _, body = http("GET", url + "/api/nodes", timeout=5)
            return status == 200 and NODE in {n["name"] for n in json.loads(body)}

        wait_for(listed, 60, f"the bridge never listed the node:\n{web.log()}")
        yield {"url": url, "audit": audit, "web": web, "node": node, "start_node": start_node}
    finally:
        web.stop()
        for n in nodes:
            n.stop()


def origin(url: str) -> dict:
    return {"Origin": url, "Content-Type": "application/json"}


def sign_in(url: str, authid: str, secret: str, headers: dict | None = None):
    h = {**origin(url), "X-Sisock-CSRF": "signin", **(headers or {})}
    return http("POST", url + "/api/operator/signin", {"authid": authid, "secret": secret}, h)


def cookie_of(headers: dict) -> str:
    return headers["set-cookie"].split(";", 1)[0]


# -- HTTP ---------------------------------------------------------------------------


def test_signin_refused_for_consumer_and_wrong_secret(opweb, accts):
    """A consumer account, a wrong secret and an unknown account cannot sign in; no cookie."""
    url = opweb["url"]
    for authid, secret in ((CONSUMER, accts[CONSUMER]), (OPERATOR, "wrong-" + accts[OPERATOR]), ("nobody", "x" * 20)):
        status, headers, body = sign_in(url, authid, secret)
        assert status == 403, (authid, status, body)
        assert json.loads(body)["error"] == "not_authorized"
        assert "set-cookie" not in headers
    status, _, body = http("GET", url + f"/api/operator/{NODE}/points")
    assert status == 401, body


def test_signin_cookie_flags_and_signout(opweb, accts):
    """The session cookie is HttpOnly, SameSite=Strict, random; the answer holds no
    secret; sign-out ends the session."""
    url = opweb["url"]
    status, headers, body = sign_in(url, OPERATOR, accts[OPERATOR])
    assert status == 200, body
    doc = json.loads(body)
    assert doc["authid"] == OPERATOR and doc["signed_in"] and len(doc["csrf"]) >= 32
    assert accts[OPERATOR] not in body.decode()
    raw = headers["set-cookie"]
    flags = [f.strip().lower() for f in raw.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags
    assert "secure" not in flags  # plain HTTP here (Secure over HTTPS, as the token cookie)
    assert not any(f.startswith("path=") for f in flags)  # the browser scopes it to /api/operator/
    name, _, sid = cookie_of(headers).partition("=")
    assert name == "sisock_operator" and len(sid) >= 32 and sid != doc["csrf"]
    cookie = {"Cookie": f"{name}={sid}"}
    status, _, body = http("GET", url + "/api/operator/session", headers=cookie)
    assert json.loads(body)["authid"] == OPERATOR
    # sign-out needs the CSRF token too
    status, _, _ = http("POST", url + "/api/operator/signout", {}, {**origin(url), **cookie})
    assert status == 403
    status, headers, _ = http(
        "POST", url + "/api/operator/signout", {}, {**origin(url), **cookie, "X-Sisock-CSRF": doc["csrf"]}
    )
    assert status == 200 and "max-age=0" in headers["set-cookie"].lower()
    status, _, body = http("GET", url + f"/api/operator/{NODE}/points", headers=cookie)
    assert status == 401, body


def test_cookie_secure_over_https(stack, opweb, accts):
    """Behind a trusted TLS proxy (--trust-proxy, X-Forwarded-Proto: https) the session
    cookie is also Secure, as the token cookie."""
    port = free_port()
    web = stack.start("opweb-tls", "web", "--port", str(port), "--trust-proxy")
    try:
        wait_port(port, 30, web.proc)
        url = f"http://127.0.0.1:{port}"
        status, headers, body = sign_in(
            url, OPERATOR, accts[OPERATOR], {"X-Forwarded-Proto": "https", "Origin": f"https://127.0.0.1:{port}"}
        )
        assert status == 200, body
        flags = [f.strip().lower() for f in headers["set-cookie"].split(";")]
        assert "secure" in flags and "httponly" in flags and "samesite=strict" in flags
    finally:
        web.stop()


def test_signin_needs_csrf_proof(opweb, accts):
    """A sign-in without the custom header, from another origin, or as a form, is refused."""
    url = opweb["url"]
    body = {"authid": OPERATOR, "secret": accts[OPERATOR]}
    for headers in (
        {**origin(url)},
        {**origin(url), "X-Sisock-CSRF": "signin", "Origin": "http://evil.example"},
        {"Origin": url, "X-Sisock-CSRF": "signin", "Content-Type": "application/x-www-form-urlencoded"},
    ):
        status, h, answer = http("POST", url + "/api/operator/signin", body, headers)
        assert status in (400, 403), (headers, status, answer)
        assert "set-cookie" not in h


def test_write_without_csrf_refused_nothing_written(opweb, accts, device):
    """With a valid session cookie, a POST without the session's CSRF token (or with
    another session's, or from a foreign Origin) is refused and the device gets
    nothing; with it, the write goes through and the errors map to HTTP."""
    url = opweb["url"]
    _, headers, body = sign_in(url, OPERATOR, accts[OPERATOR])
    csrf = json.loads(body)["csrf"]
    cookie = {"Cookie": cookie_of(headers)}
    before = device.writes
    setp = f"/api/operator/{NODE}/set"
    write = {"point": "setpoint", "value": 296.0, "request_id": str(uuid.uuid4())}
    for extra in (
        {},
        {"X-Sisock-CSRF": "signin"},
        {"X-Sisock-CSRF": csrf[:-1] + "x"},
        {"X-Sisock-CSRF": csrf, "Origin": "http://evil.example"},
    ):
        status, _, answer = http("POST", url + setp, write, {**origin(url), **cookie, **extra})
        assert status == 403, (extra, status, answer)
    assert device.writes == before
    ok = {**origin(url), **cookie, "X-Sisock-CSRF": csrf}
    status, _, answer = http("POST", url + setp, write, ok)
    assert status == 200, answer
    assert json.loads(answer)["status"] == "applied"
    assert device.writes == before + 1
    # refusals: status codes and the JSON body
    cases = [
        ({"point": "nope", "value": 1}, 404, "unknown_point"),
        ({"point": "setpoint", "value": 400.0}, 422, "out_of_limits"),
        ({"point": "setpoint", "value": 296.0, "expected": 280.0}, 409, "conflict"),
        ({"point": "setpoint", "value": "hot"}, 422, "bad_argument"),
    ]
    for case, code, error in cases:
        rid = str(uuid.uuid4())
        status, _, answer = http("POST", url + setp, {**case, "request_id": rid}, ok)
        doc = json.loads(answer)
        assert (status, doc["error"]) == (code, error), (case, status, doc)
        assert doc["request_id"] == rid and doc["point"] == case["point"] and doc["message"]
    assert device.writes == before + 1
    status, _, answer = http("GET", url + f"/api/operator/{NODE}/audit?start=-600", headers=cookie)
    rows = json.loads(answer)
    assert any(r["request_id"] == write["request_id"] and r["caller_authid"] == OPERATOR for r in rows)
    assert {"unknown_point", "out_of_limits", "conflict", "bad_argument"} <= {
        r["status"] for r in rows
    }  # every refusal is in the node's audit log


# -- the dashboard --------------------------------------------------------------------

from test_web_browser import browser, shot, wait  # noqa: E402,F401 (fixtures)
from test_web_browser import page as page  # noqa: E402 (a fixture)


def test_dashboard_signed_out_has_no_controls(opweb, page):
    """A viewer who has not signed in sees the sign-in button and no write controls."""
    page.goto(opweb["url"] + "/")
    wait(page, "window.sisock && window.sisock.ready && window.sisock.operator && window.sisock.operator.checked")
    assert page.locator("#op-signin-open").is_visible()
    assert page.locator(".op-panel").count() == 0
    assert page.locator(".op-set").count() == 0
    shot(page, "operator-signed-out")


SETPOINT = f'.op-panel[data-node="{NODE}"] [data-point="setpoint"]'


def browser_sign_in(page, url: str, secret: str) -> None:
    page.goto(url + "/")
    wait(page, "window.sisock && window.sisock.operator && window.sisock.operator.checked")
    page.click("#op-signin-open")
    page.fill("#op-authid", OPERATOR)
    page.fill("#op-secret", secret)
    page.click("#op-signin-submit")
    wait(page, f"document.querySelector({SETPOINT + ' .op-set:not([disabled])'!r})")


def test_dashboard_wrong_secret_shows_refusal(opweb, page):
    """A wrong secret leaves the page signed out, with the bridge's message."""
    page.goto(opweb["url"] + "/")
    wait(page, "window.sisock && window.sisock.operator && window.sisock.operator.checked")
    page.click("#op-signin-open")
    page.fill("#op-authid", OPERATOR)
    page.fill("#op-secret", "not-the-secret")
    page.click("#op-signin-submit")
    wait(page, "document.querySelector('#op-signin-error').textContent.includes('refused')")
    assert not page.evaluate("window.sisock.operator.signedIn")
    assert page.input_value("#op-secret") == ""
    assert page.locator(".op-panel").count() == 0


def test_dashboard_signed_in_dry_run_set_audit(opweb, accts, page, device):
    """Sign in, open the set dialog, dry run, set: the read-back is shown, the audit
    table lists the write, the device received exactly one write."""
    browser_sign_in(page, opweb["url"], accts[OPERATOR])
    assert accts[OPERATOR] not in page.content()
    shot(page, "operator-points")
    row = page.locator(f'.op-panel[data-node="{NODE}"] [data-point="setpoint"]')
    old = float(row.locator(".op-value").inner_text().split()[0])
    new = 300.0 if abs(old - 300.0) > 0.5 else 299.0
    before = device.writes
    row.locator(".op-set").click()
    page.fill("#op-new", str(new))
    page.fill("#op-reason", "browser test")
    assert page.locator("#op-dialog .op-old").inner_text().startswith(f"{old:g}")
    page.click("#op-dry-run")
    wait(page, "document.querySelector('#op-result').dataset.status === 'dry_run_ok'")
    assert device.writes == before
    shot(page, "operator-dry-run")
    page.click("#op-submit")
    wait(page, "document.querySelector('#op-result').dataset.status === 'applied'")
    text = page.locator("#op-result").inner_text()
    assert f"{new:g}" in text and "read back" in text
    shot(page, "operator-applied")
    assert device.writes == before + 1
    assert device.sim.registers["holding"][1] == round(new * 10)
    # the same dialog starts from the value just written: a second set is not a conflict
    again = new + 0.5
    page.fill("#op-new", f"{again:g}")
    page.click("#op-submit")
    wait(
        page,
        "['applied', 'conflict', 'min_interval', 'rate_limited', 'out_of_limits']"
        ".includes(document.querySelector('#op-result').dataset.status) && "
        "document.querySelector('#op-result').dataset.status !== 'pending'",
    )
    status = page.evaluate("document.querySelector('#op-result').dataset.status")
    assert status != "conflict", page.locator("#op-result").inner_text()
    if status == "applied":
        new = again
        before += 1
    page.click("#op-close")
    wait(
        page,
        f"[...document.querySelectorAll('#op-audit tbody tr')].some(tr => "
        f"tr.textContent.includes('applied') && tr.textContent.includes('{new:g}') "
        f"&& tr.textContent.includes('{OPERATOR}'))",
    )
    shot(page, "operator-audit")
    assert device.writes == before + 1
    page.click("#op-signout")
    wait(page, "document.querySelectorAll('.op-panel').length === 0")


def test_dashboard_conflict_when_changed_meanwhile(opweb, accts, page, device):
    """The dialog's write carries the value it showed as ``expected``: when the device's
    value changed meanwhile, the write is refused as a conflict and nothing is written."""
    browser_sign_in(page, opweb["url"], accts[OPERATOR])
    row = page.locator(SETPOINT)
    old = float(row.locator(".op-value").inner_text().split()[0])
    row.locator(".op-set").click()
    assert page.is_checked("#op-cas")
    meanwhile = round(old * 10) + (10 if old < 300 else -10)
    device.sim.set_registers("holding", 1, encode("int16", meanwhile))
    before = device.writes
    page.fill("#op-new", str(meanwhile / 10 + 0.5))
    page.click("#op-submit")
    wait(page, "document.querySelector('#op-result').dataset.status === 'conflict'")
    assert "refused" in page.locator("#op-result").inner_text()
    shot(page, "operator-conflict")
    assert device.writes == before
    assert device.sim.registers["holding"][1] == meanwhile


def test_dashboard_controls_disabled_while_device_down(opweb, accts, page, device):
    """With the device down the node's set buttons are disabled and the panel says so;
    they come back with the device."""
    browser_sign_in(page, opweb["url"], accts[OPERATOR])
    device.run(device.sim.stop())
    try:
        wait(
            page,
            f"document.querySelector({SETPOINT + ' .op-set[disabled]'!r}) && document.querySelector('.op-panel.down')",
        )
        assert "not answering" in page.locator(".op-panel .op-state").inner_text()
        shot(page, "operator-device-down")
    finally:
        device.run(device.sim.start())
    wait(page, f"document.querySelector({SETPOINT + ' .op-set:not([disabled])'!r})")


def test_dashboard_controls_disabled_while_node_down(opweb, accts, page):
    """With the node stopped its panel says so and its set buttons are disabled; they
    come back with the node."""
    browser_sign_in(page, opweb["url"], accts[OPERATOR])
    wait(page, "document.querySelectorAll('#op-audit tbody tr').length > 0")
    opweb["node"].stop()
    wait(
        page,
        f"document.querySelector({SETPOINT + ' .op-set[disabled]'!r}) && "
        "document.querySelector('.op-panel.down .op-state').textContent"
        ".includes('node down')",
    )
    assert page.locator("#op-audit tbody tr").count() > 0  # the audit read before stays
    shot(page, "operator-node-down")
    opweb["node"] = opweb["start_node"]()
    wait(page, f"document.querySelector({SETPOINT + ' .op-set:not([disabled])'!r})")
