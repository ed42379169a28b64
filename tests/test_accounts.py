"""Site-issued accounts (`sisock credentials`) and how the router renders them."""

from __future__ import annotations

import json
import stat

import pytest

from sisock.site import accounts, router
from sisock.site.settings import load_settings


def test_add_list_remove(tmp_path):
    """An issued account is stored 0600 with its role, listed, and revoked."""
    secret = accounts.add(tmp_path, "archive-host", "server")
    assert len(secret) >= 24
    assert accounts.read(tmp_path) == {"archive-host": {"role": "server", "secret": secret}}
    assert stat.S_IMODE(accounts.path(tmp_path).stat().st_mode) == 0o600
    assert accounts.wampcra_users(tmp_path) == {"archive-host": {"secret": secret, "role": "server"}}
    assert accounts.remove(tmp_path, "archive-host")
    assert not accounts.remove(tmp_path, "archive-host")
    assert accounts.read(tmp_path) == {}


@pytest.mark.parametrize(
    "authid, role, message",
    [
        ("hub", "server", "reserved"),
        ("a.b", "server", "letters, digits"),
        ("", "server", "letters, digits"),
        ("x" * 65, "server", "1-64"),
        ("ok", "admin", "--role must be one of"),
    ],
)
def test_add_refuses_bad_input(tmp_path, authid, role, message):
    """Bad names, reserved names and unknown roles are refused, naming the argument."""
    with pytest.raises(ValueError, match=message):
        accounts.add(tmp_path, authid, role)
    assert accounts.read(tmp_path) == {}


def test_add_refuses_a_taken_name(tmp_path):
    """Issuing the same account twice is refused (the first secret stays valid)."""
    first = accounts.add(tmp_path, "node-a", "server")
    with pytest.raises(ValueError, match="exists already"):
        accounts.add(tmp_path, "node-a", "consumer")
    assert accounts.read(tmp_path)["node-a"]["secret"] == first


def _walk(config):
    """Every dict inside a router config."""
    if isinstance(config, dict):
        yield config
        for value in config.values():
            yield from _walk(value)
    elif isinstance(config, list):
        for value in config:
            yield from _walk(value)


def test_router_renders_issued_accounts(tmp_path):
    """`sisock router` renders issued accounts next to the generated ones (with proxies too)."""
    secret = accounts.add(tmp_path, "node-a", "server")
    settings = load_settings(home=tmp_path, router_url="ws://127.0.0.1:18080/ws")
    for proxies in (0, 2):
        cbdir = router.prepare(settings, proxies)
        config = json.loads((cbdir / "config.json").read_text())
        transports = [t for t in _walk(config) if "wampcra" in t.get("auth", {})]
        # one listening transport per proxy (or the router), each with a WebSocket
        # and a RawSocket side (Crossbar's universal transport)
        assert len(transports) >= 2 * max(1, proxies)
        for t in transports:
            users = t["auth"]["wampcra"]["users"]
            assert users["node-a"] == {"secret": secret, "role": "server"}
            assert {"hub", "server", "consumer"} <= set(users)


def test_cli_add_prints_env_lines(tmp_path, capsys):
    """`sisock credentials add` prints SISOCK_USER/SISOCK_SECRET; list shows no secret."""
    from sisock.cli.main import main

    assert main(["credentials", "add", "node-b", "--role", "consumer", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split("=", 1) for line in out.split())
    assert lines["SISOCK_USER"] == "node-b"
    assert lines["SISOCK_SECRET"] == accounts.read(tmp_path)["node-b"]["secret"]
    assert main(["credentials", "list", "--home", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert listing.strip() == "node-b\tconsumer" and lines["SISOCK_SECRET"] not in listing
    assert main(["credentials", "add", "node-b", "--role", "server", "--home", str(tmp_path)]) == 2


def test_issued_accounts_reach_every_transport(tmp_path):
    """A universal transport (WebSocket and RawSocket inside) gets the accounts in both."""
    secret = accounts.add(tmp_path, "node-c", "server")
    config = {
        "workers": [
            {
                "transports": [
                    {
                        "type": "universal",
                        "websocket": {"/ws": {"type": "websocket", "auth": {"wampcra": {"users": {}}}}},
                        "rawsocket": {"type": "rawsocket", "auth": {"wampcra": {"users": {"hub": {}}}}},
                    }
                ]
            }
        ]
    }
    accounts.add_wampcra_users(config, tmp_path)
    universal = config["workers"][0]["transports"][0]
    for t in (universal["websocket"]["/ws"], universal["rawsocket"]):
        assert t["auth"]["wampcra"]["users"]["node-c"] == {"secret": secret, "role": "server"}
    assert "hub" in universal["rawsocket"]["auth"]["wampcra"]["users"]
