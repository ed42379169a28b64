"""Authorization rules for the ``server`` role (pure, no reactor).

:func:`decide` says what a data-node session may do with a URI; the
router-embedded :class:`sisock.authorizer.Authorizer` applies it and, for
``ask_owner`` verdicts, asks the hub whether the name belongs to the
asking session (DESIGN section 3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["allow", "allow_disclose", "deny", "ask_owner"]


@dataclass(frozen=True)
class Decision:
    """Outcome of :func:`decide`.

    Attributes
    ----------
    verdict : str
        ``allow``, ``allow_disclose`` (allow and disclose the caller),
        ``deny``, or ``ask_owner`` (allow only if ``name`` belongs to the
        asking session).
    name : str or None
        The data-node name the URI belongs to, for ``ask_owner``.
    """

    verdict: Verdict
    name: str | None = None


#: Data-node names: one URI component, so a name can never nest inside another.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")


def valid_name(name: object) -> bool:
    """True if ``name`` is a legal data-node name (letters, digits, ``_``, ``-``)."""
    return isinstance(name, str) and bool(NAME_PATTERN.match(name))


def node_name(uri: str, base_uri: str) -> str | None:
    """Return ``<name>`` for ``{base}.consumer.<name>.<leaf>``, else None."""
    prefix = f"{base_uri}.consumer."
    if not uri.startswith(prefix):
        return None
    parts = uri[len(prefix):].split(".")
    if len(parts) != 2 or not parts[1] or not valid_name(parts[0]):
        return None
    return parts[0]


def decide(base_uri: str, uri: str, action: str, match: str = "exact") -> Decision:
    """Decide what a ``server``-role session may do (DESIGN section 3).

    A data node may call ``data_node.add``, ``.subtract`` and ``.claim``
    (its session disclosed to the hub), subscribe to ``{base}.hub.started``,
    register ``{base}.consumer.<name>.<leaf>`` (exact match only) and
    publish ``{base}.consumer.<name>.live``, where ``<name>`` must belong to
    the asking session (verdict ``ask_owner``). Nothing else.

    Parameters
    ----------
    base_uri : str
        The sisock base URI.
    uri : str
        The URI of the action.
    action : str
        ``call``, ``register``, ``publish`` or ``subscribe``.
    match : str
        Match policy of a register/subscribe (``exact``, ``prefix``,
        ``wildcard``).

    Returns
    -------
    Decision
    """
    if action == "call":
        if uri in (f"{base_uri}.data_node.add", f"{base_uri}.data_node.subtract",
                   f"{base_uri}.data_node.claim"):
            return Decision("allow_disclose")
        return Decision("deny")
    if action == "subscribe":
        if uri == f"{base_uri}.hub.started" and match == "exact":
            return Decision("allow")
        return Decision("deny")
    if action in ("register", "publish"):
        if match != "exact":
            return Decision("deny")
        name = node_name(uri, base_uri)
        if name is None or (action == "publish" and not uri.endswith(".live")):
            return Decision("deny")
        return Decision("ask_owner", name)
    return Decision("deny")
