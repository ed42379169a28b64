"""Router-embedded dynamic authorizer for the ``server`` role.

Crossbar starts :class:`Authorizer` inside the router worker (see
``crossbar/config.json``) before the transports open, so every decision for
a data node goes through :func:`decide` and, for names, through the hub.

The rules (DESIGN section 3) are in :func:`decide`, which is pure; the
session class only wires it to WAMP and asks the hub who owns a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from autobahn.twisted.wamp import ApplicationSession
from twisted.internet.defer import inlineCallbacks

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


class Authorizer(ApplicationSession):
    """Registers ``{base}.authorize`` inside the router."""

    @inlineCallbacks
    def onJoin(self, details):  # noqa: N802 (autobahn API)
        """Register the authorizer procedure."""
        self._base = (self.config.extra or {}).get("base_uri", "org.simonsobservatory")
        yield self.register(self.authorize, f"{self._base}.authorize")
        self.log.info("sisock authorizer ready for base URI {base}", base=self._base)

    @inlineCallbacks
    def authorize(self, session, uri, action, options=None):
        """Crossbar dynamic-authorizer entry point.

        Never returns ``cache: True``: the answer depends on the session.
        """
        match = (options or {}).get("match", "exact")
        decision = decide(self._base, uri, action, match)
        if decision.verdict == "allow":
            return {"allow": True, "disclose": False, "cache": False}
        if decision.verdict == "allow_disclose":
            return {"allow": True, "disclose": True, "cache": False}
        if decision.verdict == "deny":
            return {"allow": False, "disclose": False, "cache": False}
        try:
            ok = yield self.call(
                f"{self._base}.data_node.claim", decision.name, session["session"]
            )
        except Exception as exc:  # hub not running: refuse, the node retries
            self.log.warn(
                "refusing {action} {uri}: cannot ask the hub ({exc})",
                action=action, uri=uri, exc=exc,
            )
            ok = False
        return {"allow": bool(ok), "disclose": False, "cache": False}
