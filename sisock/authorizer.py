"""Router-embedded dynamic authorizer for the ``server`` role.

Crossbar starts :class:`Authorizer` inside the router worker (see
``crossbar/config.json``) before the transports open, so every decision for
a data node goes through :func:`sisock.authz.decide` and, for names, through
the hub's ``data_node.claim``.
"""

from __future__ import annotations

from autobahn.twisted.wamp import ApplicationSession
from twisted.internet.defer import inlineCallbacks

from .authz import decide
from .protocol import DEFAULT_BASE_URI, Uris


class Authorizer(ApplicationSession):
    """Registers ``{base}.authorize`` inside the router.

    Names the hub confirmed for a session are remembered until that session
    leaves or the name is subtracted, so a node keeps publishing its live
    samples while the hub restarts, and a publish costs no hub round trip.
    (Names never move between live sessions, so the memory cannot go stale.)
    """

    @inlineCallbacks
    def onJoin(self, details):  # noqa: N802 (autobahn API)
        """Register the authorizer procedure and follow departures."""
        self._base = (self.config.extra or {}).get("base_uri", DEFAULT_BASE_URI)
        self._uris = Uris(self._base)
        self._owned: dict[int, set[str]] = {}
        yield self.subscribe(self._on_leave, "wamp.session.on_leave")
        yield self.subscribe(self._on_subtracted, self._uris.node_subtracted)
        yield self.register(self.authorize, self._uris.authorize)
        self.log.info("sisock authorizer ready for base URI {base}", base=self._base)

    def _on_leave(self, session_id, *args, **kwargs) -> None:
        self._owned.pop(session_id, None)

    def _on_subtracted(self, info, *args, **kwargs) -> None:
        name = info.get("name") if isinstance(info, dict) else None
        for names in self._owned.values():
            names.discard(name)

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
        sid = session["session"]
        if decision.name in self._owned.get(sid, ()):
            return {"allow": True, "disclose": False, "cache": False}
        # A shared registration (invoke roundrobin/random...) asks to join the
        # name as a replica; the hub also checks the session's authid then.
        replica = action == "register" and (options or {}).get("invoke", "single") != "single"
        try:
            if replica:
                ok = yield self.call(self._uris.claim, decision.name, sid, replica=True,
                                     authid=session.get("authid"))
            else:
                ok = yield self.call(self._uris.claim, decision.name, sid)
        except Exception as exc:  # hub not running: refuse, the node retries
            self.log.warn(
                "refusing {action} {uri}: cannot ask the hub ({exc})",
                action=action, uri=uri, exc=exc,
            )
            ok = False
        if ok:
            self._owned.setdefault(sid, set()).add(decision.name)
        return {"allow": bool(ok), "disclose": False, "cache": False}
