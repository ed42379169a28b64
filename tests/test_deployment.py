"""The deployment files stay honest: Dockerfile, docker-compose.yml, systemd units.

No container engine runs here, so every path they copy or mount, every
command they run (parsed by the real ``sisock`` argument parser) and every
port they publish is checked against the repository and the defaults.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from sisock.cli.main import build_parser
from sisock.site.settings import DEFAULT_ROUTER_URL

REPO = Path(__file__).resolve().parent.parent
SYSTEMD = REPO / "docs" / "systemd"
ROUTER_PORT = urlsplit(DEFAULT_ROUTER_URL).port


def parse(argv: list[str]):
    """Parse ``sisock ARGV`` with the real parser (SystemExit on a bad command or flag)."""
    assert argv[0].endswith("sisock"), argv
    return build_parser().parse_args(argv[1:])


def web_port() -> int:
    """``sisock web``'s default port."""
    return build_parser().parse_args(["web"]).port


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_dockerfile_copies_existing_paths_and_runs_a_command():
    """Every COPY source exists in the repository; CMD is a real sub-command; EXPOSE matches defaults."""
    text = (REPO / "Dockerfile").read_text()
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M))
    copies = re.findall(r"^COPY\s+(.+)$", text, re.M)
    assert copies
    for line in copies:
        words = line.split()
        if words[0].startswith("--from="):
            assert words[0].split("=", 1)[1] in stages, line
            continue
        for src in words[:-1]:
            assert (REPO / src).exists(), src
    cmd = re.search(r"^CMD\s+(\[.+\])$", text, re.M).group(1)
    assert parse(yaml.safe_load(cmd)) is not None
    exposed = {int(p) for p in re.search(r"^EXPOSE\s+(.+)$", text, re.M).group(1).split()}
    assert exposed == {ROUTER_PORT, web_port()}
    volumes = yaml.safe_load(re.search(r"^VOLUME\s+(\[.+\])$", text, re.M).group(1))
    home = re.search(r"SISOCK_HOME=(\S+)", text).group(1)
    assert home in volumes, "secrets (SISOCK_HOME) belong in a volume"


def test_compose_services_commands_ports_and_volumes(compose):
    """Router, hub, every server and the web bridge run; commands parse; ports and URLs match defaults."""
    services = compose["services"]
    commands = {name: s["command"] for name, s in services.items()}
    verbs = {tuple(c[1:3]) if c[1] in ("serve", "sim") else (c[1],) for c in commands.values()}
    from sisock.cli.serve import SERVERS

    expected = {("router",), ("hub",), ("web",), ("sim", "modbus")} | {("serve", s) for s in SERVERS}
    assert verbs == expected, verbs ^ expected
    for name, argv in commands.items():
        parse(argv)
    for name, s in services.items():
        url = s["environment"]["SISOCK_ROUTER_URL"]
        assert urlsplit(url).port == ROUTER_PORT, (name, url)
        if name != "router":
            assert urlsplit(url).hostname == "router", (name, url)
        for volume in s.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                assert (REPO / source).exists(), (name, source)
            else:
                assert source in compose["volumes"], (name, source)
    router = services["router"]
    assert urlsplit(router["environment"]["SISOCK_ROUTER_URL"]).hostname == "0.0.0.0"
    assert router["ports"] == [f"{ROUTER_PORT}:{ROUTER_PORT}"]
    web = services["web"]
    assert web["ports"] == [f"{web_port()}:{web_port()}"]
    assert web["command"][web["command"].index("--port") + 1] == str(web_port())
    assert "sisock-home:/var/lib/sisock" in services["hub"]["volumes"]


def test_compose_modbus_matches_the_simulator(compose):
    """The Modbus node's config is the shipped example pointed at the simulator service."""
    from sisock.servers.modbus.config import load_config
    from sisock.servers.modbus.server import example_config
    from sisock.servers.modbus.simulator import DEFAULT_PORT

    sim = compose["services"]["modbus-sim"]["command"]
    port = int(sim[sim.index("--port") + 1])
    assert port == DEFAULT_PORT
    assert (REPO / "deploy" / "modbus.toml").read_text() == example_config(port, "modbus-sim"), (
        "regenerate deploy/modbus.toml from servers/modbus/example.toml"
    )
    load_config(REPO / "deploy" / "modbus.toml")
    modbus = compose["services"]["modbus"]["command"]
    archive = compose["services"]["archive"]["command"]
    assert modbus[modbus.index("--archive") + 1] == archive[archive.index("--archive") + 1]
    assert "--replica" in archive and compose["services"]["archive"]["deploy"]["replicas"] >= 2


def units() -> list[Path]:
    return sorted(SYSTEMD.glob("*.service"))


def test_systemd_units_parse_and_run_real_commands():
    """Each unit has its sections, runs the venv's sisock with arguments the parser accepts."""
    assert {u.name for u in units()} >= {
        "sisock-router.service",
        "sisock-hub.service",
        "sisock-hdf5@.service",
        "sisock-modbus@.service",
        "sisock-web.service",
    }
    guide = (REPO / "docs" / "deployment.md").read_text()
    for unit in units():
        text = unit.read_text()
        sections = re.findall(r"^\[(\w+)\]$", text, re.M)
        assert sections == ["Unit", "Service", "Install"], unit.name
        (exec_start,) = re.findall(r"^ExecStart=(.+)$", text, re.M)
        argv = shlex.split(exec_start.replace("%i", "example"))
        assert argv[0] == "/opt/sisock/venv/bin/sisock", unit.name
        parse(argv)
        for env in re.findall(r"^EnvironmentFile=-?(.+)$", text, re.M):
            assert env.startswith("/etc/sisock/"), (unit.name, env)
        assert re.search(r"^User=sisock$", text, re.M) and re.search(r"^Restart=always$", text, re.M)
        assert unit.name in guide, f"docs/deployment.md does not mention {unit.name}"
    assert "python3.11 -m venv /opt/sisock/venv" in guide
    assert "useradd" in guide and "/etc/sisock/sisock.env" in guide


def test_parse_rejects_a_wrong_command():
    """The parser the checks above rely on does refuse an unknown flag (so they can fail)."""
    with pytest.raises(SystemExit):
        parse(["sisock", "serve", "hdf5", "--archive", "/x", "--no-such-flag"])
