"""Authorization rules for the ``server`` role (pure, no reactor).

:func:`decide` says what a data-node session may do with a URI; the
router-embedded :class:`sisock.site.authorizer.Authorizer` applies it and, for
``ask_owner`` verdicts, asks the hub whether the name belongs to the
asking session (README, "Security model").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sisock.core.protocol import Uris, valid_name

__all__ = ["Decision", "authorization", "decide", "node_name", "operator_decision", "valid_name"]

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
    cacheable : bool
        True when the router may keep this decision for every ``server``
        session (:func:`cacheable`).
    """

    verdict: Verdict
    name: str | None = None
    cacheable: bool = False


def node_name(uri: str, base_uri: str) -> str | None:
    """Return ``<name>`` for ``{base}.consumer.<name>.<leaf>``, else None."""
    return Uris(base_uri).node_name(uri)


def decide(base_uri: str, uri: str, action: str, match: str = "exact") -> Decision:
    """Decide what a ``server``-role session may do (README, "Security model").

    A data node may call ``data_node.add``, ``.subtract`` and ``.claim``
    (its session disclosed to the hub), subscribe to ``{base}.hub.started``,
    register ``{base}.consumer.<name>.<leaf>`` and
    ``{base}.operator.<name>.<leaf>`` (exact match only) and publish
    ``{base}.consumer.<name>.live``, where ``<name>`` must belong to the
    asking session (verdict ``ask_owner``). Nothing else.

    Only the three calls to the hub are ``cacheable``. Crossbar keeps a
    cached decision for the router's whole life and looks it up by (realm,
    role, URI, action) alone: not by session, authid or options, and it
    never forgets one. So a decision may be cached only if it cannot depend
    on any of those, nor on the hub's state, and if the URIs it covers are
    few. The hub calls qualify: the same answer (allow, caller disclosed)
    for every ``server`` session, whatever the options; the hub itself
    then decides on the disclosed caller. Not cacheable:

    * ``ask_owner`` (register, publish): depends on the asking session and
      on what the hub gave it;
    * the ``hub.started`` subscription: allowed for an exact match only,
      and the match is not part of the cache's key (a cached allow would
      let a later prefix subscription through);
    * refusals: role-uniform, but of any URI a session cares to try; each
      cached one would stay in the router's memory for good.

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
    operator = operator_decision(base_uri, uri, action, match)
    if operator is not None:
        return operator
    uris = Uris(base_uri)
    if action == "call":
        if uri in (uris.add, uris.subtract, uris.claim):
            return Decision("allow_disclose", cacheable=True)
        return Decision("deny")
    if action == "subscribe":
        if uri == uris.hub_started and match == "exact":
            return Decision("allow")
        return Decision("deny")
    if action in ("register", "publish"):
        if match != "exact":
            return Decision("deny")
        if action == "publish":
            name = uris.node_name(uri)
            if name is None or not uri.endswith(".live"):
                return Decision("deny")
        else:
            name = uris.owned_name(uri)
            if name is None:
                return Decision("deny")
        return Decision("ask_owner", name)
    return Decision("deny")


def authorization(decision: Decision, owner: bool = False) -> dict:
    """The answer the router expects from the authorizer for ``decision``.

    Parameters
    ----------
    decision : Decision
        From :func:`decide`.
    owner : bool
        For ``ask_owner``: whether the name belongs to the asking session.

    Returns
    -------
    dict
        ``{"allow", "disclose", "cache"}``; ``cache`` is True only for a
        ``cacheable`` decision (never for one that depends on the session).
    """
    allow = decision.verdict in ("allow", "allow_disclose") or (decision.verdict == "ask_owner" and owner)
    return {
        "allow": bool(allow),
        "disclose": decision.verdict == "allow_disclose",
        "cache": decision.cacheable,
    }


#: Procedures a writable data node registers under ``{base}.operator.<name>.``.
OPERATOR_LEAVES = ("points", "set", "audit")


def operator_decision(base_uri: str, uri: str, action: str, match: str = "exact") -> Decision | None:
    """The ``server`` role's rule for ``{base}.operator.`` URIs; None for other URIs.

    A data node may register ``{base}.operator.<its own name>.points``,
    ``.set`` and ``.audit`` (exact match; ``ask_owner``), and do nothing
    else under ``{base}.operator.``: it may not call, publish, subscribe,
    nor register another node's procedures.

    Parameters
    ----------
    base_uri, uri, action, match
        As for :func:`decide`.

    Returns
    -------
    Decision or None
    """
    prefix = f"{base_uri}.operator."
    if not (uri.startswith(prefix) or uri == prefix[:-1]):
        return None
    if action != "register" or match != "exact":
        return Decision("deny")
    parts = uri[len(prefix) :].split(".")
    if len(parts) != 2 or parts[1] not in OPERATOR_LEAVES or not valid_name(parts[0]):
        return Decision("deny")
    return Decision("ask_owner", parts[0])
