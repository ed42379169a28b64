"""Development credentials and TLS material generated into ``SISOCK_HOME``.

Nothing secret is shipped with sisock. The first ``sisock router`` (or
``sisock demo``) in a ``SISOCK_HOME`` writes random WAMP-CRA secrets for the
three roles into ``credentials.json`` (mode 0600); every other command on
the machine reads that file and picks its role's entry. Sites that issue
credentials themselves set ``SISOCK_USER`` / ``SISOCK_SECRET`` instead.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
from pathlib import Path

ROLE_NAMES = ("hub", "server", "consumer")
FILENAME = "credentials.json"


def path(home: Path) -> Path:
    """Return the credentials file inside ``home``."""
    return Path(home) / FILENAME


def read(home: Path) -> dict | None:
    """Read the credentials file, or return None when there is none."""
    p = path(home)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        return None


def ensure(home: Path) -> dict:
    """Read the credentials file, creating it with fresh secrets if missing.

    Returns
    -------
    dict
        ``{role: {"authid": str, "secret": str}}`` for each role.
    """
    existing = read(home)
    if existing is not None and all(r in existing for r in ROLE_NAMES):
        return existing
    home = Path(home)
    if not home.exists():
        home.mkdir(parents=True)
        os.chmod(home, 0o700)  # only a directory we create; never re-mode an existing one
    creds = {role: {"authid": role, "secret": secrets.token_urlsafe(24)} for role in ROLE_NAMES}
    p = path(home)
    tmp = p.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f, indent=2)
    os.replace(tmp, p)
    return creds


def tls_paths(home: Path) -> dict[str, Path]:
    """Paths of the router's TLS key, certificate and the CA clients trust."""
    d = Path(home) / "tls"
    return {"key": d / "server.key", "cert": d / "server.crt", "ca": d / "ca.crt"}


def ensure_tls(home: Path, hostname: str) -> dict[str, Path]:
    """Create a development CA and a server certificate for ``hostname``.

    Existing files are kept, so a site can drop its own ``server.key`` /
    ``server.crt`` / ``ca.crt`` into ``SISOCK_HOME/tls``.

    Returns
    -------
    dict
        The paths from :func:`tls_paths`.
    """
    paths = tls_paths(home)
    if all(p.exists() for p in paths.values()):
        return paths
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    paths["key"].parent.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sisock development CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        sans.append(x509.IPAddress(ipaddress.ip_address(hostname)))
    except ValueError:
        sans.append(x509.DNSName(hostname))
    if hostname != "127.0.0.1":
        sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    fd = os.open(paths["key"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return paths
