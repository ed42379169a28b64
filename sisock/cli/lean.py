"""What ``sisock serve`` leaves unimported, so that a node starts sooner.

Consumers wait for a data node that restarts (a deployment, a crash),
and most of its time to the first answer is the interpreter importing
libraries. Three costs are avoided:

* TLS libraries, when the router is reached without TLS (``ws://``,
  ``rs://``): Twisted's reactor and autobahn import pyOpenSSL when it is
  installed (it is: crossbar needs it), and with it cryptography's X.509
  and ``service_identity`` (70 modules, tens of milliseconds).
  :func:`skip_tls_libraries` makes ``import OpenSSL`` fail cleanly before
  Twisted is imported; Twisted and autobahn then run without TLS support,
  which such a process never uses. A ``wss://`` or ``rss://`` router URL
  leaves everything as it is.
* autobahn's C declarations: its compiled WebSocket helpers are reached
  through modules that parse C at import (:mod:`sisock.wamp.nvx` loads
  them without that).
* Entry points of installed packages (``importlib.metadata``) are looked
  up only when the command names no built-in server
  (:func:`sisock.cli.main.build_parser`).
* Optional libraries autobahn imports when they are installed, for
  features a built-in data node never uses (:data:`UNUSED_OPTIONAL`):
  click colours autobahn's console helpers, argon2 and passlib serve
  WAMP-SCRAM (sisock authenticates with WAMP-CRA or cryptosign). Both
  imports are guarded in autobahn, which goes on without them. A server
  from another package keeps them: it may use them.

The cyclic garbage collector stays off while the command starts
(:func:`sisock.cli.main.main`): imports allocate much and free little,
and collections during them cost a tenth of the start-up;
:func:`collect_from_now` turns it back on, after moving every object made
so far out of its reach (``gc.freeze``: modules, classes and functions
live as long as the process).

h5py is imported by the archive's I/O module on first use
(:mod:`sisock.archive.h5io`): a restarted archive node whose first queries
its index answers never imports it.

Starting the nodes' warm-up (e.g. an archive's index) in a thread while
Twisted and autobahn import was tried: on two busy cores it made the node
listed later and saved nothing, so warm-ups start with the reactor.
"""

from __future__ import annotations

import gc
import sys
from urllib.parse import urlsplit

#: Router URL schemes that need TLS.
TLS_SCHEMES = ("wss", "rss")


#: Installed libraries autobahn imports that a built-in data node never uses.
UNUSED_OPTIONAL = ("click", "argon2", "passlib")


def prepare(router_url: str, builtin: bool = True) -> None:
    """Everything to do before Twisted and autobahn are imported (see above).

    ``builtin`` is False for a server from another package.
    """
    from sisock.wamp import nvx

    skip_tls_libraries(router_url)
    if builtin:
        skip_unused_optional()
    nvx.install()


def skip_unused_optional() -> list[str]:
    """Keep :data:`UNUSED_OPTIONAL` unimported; return those skipped.

    Call it before autobahn is imported; a later import of one of them
    raises ImportError.
    """
    if "autobahn" in sys.modules:
        return []  # too late: autobahn made its choices already
    skipped = []
    for name in UNUSED_OPTIONAL:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]
            skipped.append(name)
    return skipped


def skip_tls_libraries(router_url: str) -> bool:
    """Keep pyOpenSSL unimported in this process if ``router_url`` needs no TLS.

    Call it before Twisted is imported. Returns True when the libraries
    are skipped; a later ``import OpenSSL`` then raises ImportError.
    """
    if urlsplit(router_url).scheme in TLS_SCHEMES:
        return False
    if "OpenSSL" in sys.modules or "twisted.internet.reactor" in sys.modules:
        return False  # too late: already imported or already chosen
    sys.modules["OpenSSL"] = None  # type: ignore[assignment]
    return True


def collect_from_now() -> None:
    """Freeze what start-up made and turn the cyclic collector (back) on."""
    gc.freeze()
    gc.enable()
