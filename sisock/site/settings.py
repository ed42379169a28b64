"""Settings: flags, then environment, then defaults (README, "Commands").

Nothing here touches the network. Reading the credentials file is the only
disk access, and it happens when :func:`load_settings` is called, never at
import.
"""

from __future__ import annotations

from typing import Any

import os
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from . import credentials
from sisock.core.protocol import DEFAULT_BASE_URI, Uris

DEFAULT_ROUTER_URL = "ws://127.0.0.1:8080/ws"
DEFAULT_REALM = "sisock"
#: URL schemes of the router: WebSocket (``ws``, ``wss``) or RawSocket (``rs``, ``rss``).
RAWSOCKET_SCHEMES = ("rs", "rss")
TLS_SCHEMES = ("wss", "rss")

#: The role whose credentials each kind of program uses by default.
ROLES = ("hub", "server", "consumer")


@dataclass(frozen=True)
class Settings:
    """Where and how to connect to the router.

    Attributes
    ----------
    router_url : str
        URL of the router: WebSocket (``ws://``, ``wss://``) or RawSocket
        (``rs://``, ``rss://``; same host and port, no path).
    realm : str
        WAMP realm.
    base_uri : str
        Prefix of every sisock URI.
    user, secret : str or None
        WAMP-CRA credentials (None: connect without authenticating, which
        the shipped router refuses).
    tls_ca : str or None
        CA certificate file used to verify a ``wss://`` router.
    home : pathlib.Path
        ``SISOCK_HOME``: generated secrets and runtime files.
    rawsocket : {"auto", "yes", "no"}
        ``SISOCK_ROUTER_RAWSOCKET``: with a ``ws(s)://`` URL, whether to
        speak RawSocket to the same host and port (falling back to
        WebSocket). ``auto`` does so when the router started from this
        ``SISOCK_HOME`` offers it (see :mod:`sisock.wamp.transport`).
    """

    router_url: str = DEFAULT_ROUTER_URL
    realm: str = DEFAULT_REALM
    base_uri: str = DEFAULT_BASE_URI
    user: str | None = None
    secret: str | None = None
    tls_ca: str | None = None
    home: Path = Path("~/.config/sisock").expanduser()
    rawsocket: str = "auto"

    def uri(self, suffix: str) -> str:
        """Return ``"{base_uri}.{suffix}"``."""
        return f"{self.base_uri}.{suffix}"

    @property
    def uris(self) -> Uris:
        """Every protocol URI under :attr:`base_uri`."""
        return Uris(self.base_uri)

    @property
    def host(self) -> str:
        """Host part of :attr:`router_url`."""
        return urlsplit(self.router_url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        """Port of :attr:`router_url` (default 80 / 443 by scheme)."""
        parts = urlsplit(self.router_url)
        return parts.port or (443 if self.is_tls else 80)

    @property
    def is_tls(self) -> bool:
        """True for a ``wss://`` or ``rss://`` router URL."""
        return urlsplit(self.router_url).scheme in TLS_SCHEMES

    @property
    def is_rawsocket(self) -> bool:
        """True for a ``rs://`` or ``rss://`` router URL (WAMP over RawSocket)."""
        return urlsplit(self.router_url).scheme in RAWSOCKET_SCHEMES

    @property
    def websocket_path(self) -> str:
        """First path component of a ``ws(s)://`` URL (``"ws"`` by default)."""
        if self.is_rawsocket:
            return "ws"
        parts = [p for p in urlsplit(self.router_url).path.split("/") if p]
        return parts[0] if parts else ""

    def with_role(self, role: str) -> "Settings":
        """Return a copy carrying ``role``'s generated credentials.

        Explicit ``user``/``secret`` (flags or ``SISOCK_USER`` /
        ``SISOCK_SECRET``) win; otherwise the credentials file in
        :attr:`home` is read.
        """
        if self.user and self.secret:
            return self
        creds = credentials.read(self.home)
        if creds is None or role not in creds:
            return self
        return replace(self, user=creds[role]["authid"], secret=creds[role]["secret"])


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _rawsocket_choice(value: str) -> str:
    """Normalise ``SISOCK_ROUTER_RAWSOCKET`` to ``auto``, ``yes`` or ``no``."""
    v = str(value).strip().lower()
    if v in ("auto", ""):
        return "auto"
    if v in ("yes", "1", "true", "on"):
        return "yes"
    if v in ("no", "0", "false", "off"):
        return "no"
    from sisock.core.errors import BadArgument

    raise BadArgument(f"SISOCK_ROUTER_RAWSOCKET must be auto, yes or no, got {value!r}")


def load_settings(
    role: str | None = None,
    *,
    router_url: str | None = None,
    realm: str | None = None,
    base_uri: str | None = None,
    user: str | None = None,
    secret: str | None = None,
    tls_ca: str | None = None,
    home: str | os.PathLike | None = None,
    rawsocket: str | None = None,
) -> Settings:
    """Resolve settings from arguments, then environment, then defaults.

    Parameters
    ----------
    role : {"hub", "server", "consumer"}, optional
        Pick this role's credentials from the generated credentials file
        unless a user and secret are given explicitly.
    router_url, realm, base_uri, user, secret, tls_ca, home, rawsocket
        Explicit values (e.g. command-line flags); None means "not given".

    Returns
    -------
    Settings
    """
    home_path = Path(home or _env("SISOCK_HOME") or "~/.config/sisock").expanduser()
    url = router_url or _env("SISOCK_ROUTER_URL") or DEFAULT_ROUTER_URL
    ca = tls_ca or _env("SISOCK_TLS_CA")
    if ca is None and urlsplit(url).scheme in TLS_SCHEMES:
        generated = credentials.tls_paths(home_path)["ca"]
        if generated.exists():
            ca = str(generated)
    settings = Settings(
        router_url=url,
        realm=realm or _env("SISOCK_REALM") or DEFAULT_REALM,
        base_uri=base_uri or _env("SISOCK_BASE_URI") or DEFAULT_BASE_URI,
        user=user or _env("SISOCK_USER", "WAMP_USER"),
        secret=secret or _env("SISOCK_SECRET", "WAMP_SECRET"),
        tls_ca=ca,
        home=home_path,
        rawsocket=_rawsocket_choice(rawsocket or _env("SISOCK_ROUTER_RAWSOCKET") or "auto"),
    )
    if bool(settings.user) != bool(settings.secret):
        from sisock.core.errors import BadArgument

        given, missing = ("user", "secret") if settings.user else ("secret", "user")
        raise BadArgument(
            f"a WAMP {given} was given (flag, SISOCK_{given.upper()} or WAMP_{given.upper()}) "
            f"without a {missing}: give both, or neither to use the generated credentials"
        )
    if role is not None:
        settings = settings.with_role(role)
    return settings


def settings_from_args(args: Any, role: str | None) -> Settings:
    """:class:`Settings` from a command's parsed connection flags (flags > environment > defaults)."""
    return load_settings(
        role,
        router_url=args.router_url,
        realm=args.realm,
        base_uri=args.base_uri,
        user=getattr(args, "user", None),
        secret=getattr(args, "secret", None),
        tls_ca=getattr(args, "tls_ca", None),
        home=args.home,
    )
