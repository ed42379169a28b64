"""Authorization rules for the ``server`` role (pure, no reactor).

:func:`decide` says what a data-node session may do with a URI; the
router-embedded :class:`sisock.authorizer.Authorizer` applies it and, for
``ask_owner`` verdicts, asks the hub whether the name belongs to the
asking session (DESIGN section 3).
"""

from __future__ import annotations

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


def node_name(uri: str, base_uri: str) -> str | None:
    """Return ``<name>`` for ``{base}.consumer.<name>.<leaf>``, else None."""
    prefix = f"{base_uri}.consumer."
    if not uri.startswith(prefix):
        return None
    rest = uri[len(prefix):]
    if "." not in rest:
        return None
    name, leaf = rest.rsplit(".", 1)
    if not name or not leaf:
        return None
    return name


def decide(base_uri: str, uri: str, action: str, match: str = "exact") -> Decision:
    """Decide what a ``server``-role session may do.

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
        if uri.startswith(f"{base_uri}.consumer."):
            return Decision("allow")
        return Decision("deny")
    if action == "subscribe":
        if uri.startswith(f"{base_uri}.consumer.") or uri.startswith(f"{base_uri}.hub."):
            return Decision("allow")
        return Decision("deny")
    if action in ("register", "publish"):
        if action == "register" and match != "exact":
            return Decision("deny")
        name = node_name(uri, base_uri)
        if name is None:
            return Decision("deny")
        return Decision("ask_owner", name)
    return Decision("deny")


