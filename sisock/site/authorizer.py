"""Router-embedded dynamic authorizer for the ``server`` role.

Crossbar starts :class:`Authorizer` inside the router worker (see
``crossbar/config.json``) before the transports open, so every decision for
a data node goes through :func:`sisock.site.access.decide` and, for names, through
the hub's ``data_node.claim``.

Name ownership (``docs/security.md``): the hub's registry is the one
authority on who owns a name. The authorizer only remembers names the hub
confirmed, so that a publish costs no hub round trip and live samples keep
flowing while the hub restarts. That memory is always a subset of the hub's
registry: it forgets a session's names when the session leaves, and the hub
calls ``{base}.authorizer.release`` *before* a session stops owning a name
(subtract, a replica withdrawing, a conflict found after a hub restart), so
the very next register or publish of that session is asked of the hub
again. A restarted hub reads the memory back with ``{base}.authorizer.owned``.
"""

from __future__ import annotations

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from twisted.internet.defer import inlineCallbacks

from .access import authorization, decide
from sisock.core.protocol import DEFAULT_BASE_URI, Uris
from sisock.core.tally import Tally

#: How often a grant is asked again when a release of the same name raced it.
CLAIM_ATTEMPTS = 3

#: Seconds between two log lines about refusals while no hub answers (a
#: router restart brings hundreds of nodes back, often before the hub).
HUB_AWAY_LOG_SECONDS = 10.0

#: Seconds between two refusals of one session passed on with the hub's reason
#: (each is a traceback in the router's log); the others are plain refusals.
EXPLAIN_SECONDS = 10.0


class Authorizer(ApplicationSession):
    """Registers ``{base}.authorize`` (and the hub's ``authorizer.*``) inside the router."""

    @inlineCallbacks
    def onJoin(self, details):
        """Register the authorizer procedures and follow departures."""
        self._base = (self.config.extra or {}).get("base_uri", DEFAULT_BASE_URI)
        self._uris = Uris(self._base)
        self._owned: dict[int, set[str]] = {}
        self._authids: dict[int, str | None] = {}
        self._replicas: set[tuple[int, str]] = set()  # (session, name) granted as a replica
        #: Per name, how many releases happened: a hub answer obtained before a
        #: release of the same name must not be remembered after it.
        self._releases: dict[str, int] = {}
        #: Refusals while no hub answers, logged once per HUB_AWAY_LOG_SECONDS.
        self._away = Tally(HUB_AWAY_LOG_SECONDS)
        #: Per session, when the hub's reason for a refusal was last passed on
        #: (raised: Crossbar logs each with a traceback, so at most every 10 s).
        self._explained: dict[int, Tally] = {}
        yield self.subscribe(self._on_leave, "wamp.session.on_leave")
        yield self.register(self.release, self._uris.authorizer_release)
        yield self.register(self.owned, self._uris.authorizer_owned)
        yield self.register(self.authorize, self._uris.authorize)
        self.log.info("sisock authorizer ready for base URI {base}", base=self._base)

    def _on_leave(self, session_id, *args, **kwargs) -> None:
        for name in self._owned.pop(session_id, ()):
            self._replicas.discard((session_id, name))
        self._authids.pop(session_id, None)
        self._explained.pop(session_id, None)

    def release(self, name: str, session: int) -> bool:
        """``{base}.authorizer.release``: ``session`` no longer owns ``name``.

        Called by the hub (the only role allowed to) before it lets the
        name go; every later request of that session under the name is
        asked of the hub again.

        Parameters
        ----------
        name : str
            The data-node name.
        session : int
            The WAMP session id that stops owning it.

        Returns
        -------
        bool
            True if the authorizer had remembered the name for that session.
        """
        self._releases[name] = self._releases.get(name, 0) + 1
        self._replicas.discard((session, name))
        names = self._owned.get(session)
        if not names or name not in names:
            return False
        names.discard(name)
        if not names:
            del self._owned[session]
        return True

    def owned(self) -> list[list]:
        """``{base}.authorizer.owned``: what the authorizer remembers now.

        Returns
        -------
        list
            ``[[session, authid, name, replica], ...]``; ``replica`` is True
            when the name was granted to the session as one of its replicas.
        """
        return [
            [sid, self._authids.get(sid), name, (sid, name) in self._replicas]
            for sid, names in self._owned.items()
            for name in sorted(names)
        ]

    @inlineCallbacks
    def authorize(self, session, uri, action, options=None):
        """Crossbar dynamic-authorizer entry point.

        Returns ``cache: True`` only for decisions that are the same for
        every ``server`` session whatever its options
        (:func:`sisock.site.access.decide` says which and why): Crossbar
        then answers them itself for the router's life. A refusal of the
        hub for a bad argument (such as the limit on names per session) is
        raised, so the node sees the hub's message.
        """
        match = (options or {}).get("match", "exact")
        decision = decide(self._base, uri, action, match)
        if decision.verdict != "ask_owner":
            return authorization(decision)
        sid = session["session"]
        name = decision.name
        if name in self._owned.get(sid, ()):
            return authorization(decision, owner=True)
        # A shared registration (invoke roundrobin/random...) asks to join the
        # name as a replica; the hub also checks the session's authid then.
        replica = action == "register" and (options or {}).get("invoke", "single") != "single"
        extra = {"replica": True, "authid": session.get("authid")} if replica else {}
        ok = False
        for _ in range(CLAIM_ATTEMPTS):
            seen = self._releases.get(name, 0)
            try:
                ok = yield self.call(self._uris.claim, name, sid, **extra)
            except ApplicationError as exc:
                if exc.error == self._uris.error("bad_argument"):  # the hub says why
                    if self._explained.setdefault(sid, Tally(EXPLAIN_SECONDS)).due() is not None:
                        raise
                    return authorization(decision, owner=False)  # said a moment ago: refuse quietly
                ok = self._hub_away(action, uri, exc)
            except Exception as exc:
                ok = self._hub_away(action, uri, exc)
            if self._releases.get(name, 0) == seen:
                break
            ok = False  # released while we asked: ask again
        if ok:
            self._owned.setdefault(sid, set()).add(name)
            self._authids[sid] = session.get("authid")
            if replica:
                self._replicas.add((sid, name))
        return authorization(decision, owner=bool(ok))

    def onUserError(self, fail, msg):
        """Log a refusal the hub explained in one line; anything else with its traceback.

        A register refused for a bad argument (e.g. over the limit of names
        per session) is an answer, not a fault: a traceback in the router's
        log would only make people think the router broke.
        """
        exc = getattr(fail, "value", fail)
        if isinstance(exc, ApplicationError) and self._uris.is_error(exc.error):
            self.log.info("refused: {why}", why=exc.args[0] if exc.args else exc.error)
            return
        super().onUserError(fail, msg)

    def _hub_away(self, action: str, uri: str, exc: Exception) -> bool:
        """No hub to ask: refuse (the node retries when the hub is back).

        Logged once per :data:`HUB_AWAY_LOG_SECONDS`, with the number of
        refusals since the last line.
        """
        unsaid = self._away.due()
        if unsaid is not None:
            more = f" (and {unsaid} more refusals since the last line)" if unsaid else ""
            self.log.warn(
                "refusing {action} {uri}: cannot ask the hub ({exc}){more}", action=action, uri=uri, exc=exc, more=more
            )
        return False
