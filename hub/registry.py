"""The hub's bookkeeping: which session owns which data-node name (pure).

A name is *claimed* when its session first registers a procedure under
``{base}.consumer.<name>.`` (the router's authorizer asks the hub), and
*listed* once the session calls ``data_node.add``. Either order works, so
sisock 0.x servers (register, then add) and new ones (add, then register)
are both served. Only the owning session may list or subtract a name; a
name is freed when its session leaves.

*Replicated* names (``sisock serve hdf5 --replica``, ``docs/scaling.md``)
are served by several sessions at once through a WAMP shared
registration. The first claim decides: a name first claimed as a replica is
replicable, and further sessions may join it only when they too claim as a
replica *and* authenticated with the same authid as the first; a name first
claimed as a single node takes no replica, and a replicated name takes no
single node. The name stays listed until its last member leaves.

A session stops owning a name only by leaving, or by a *release*
(``data_node.subtract``) in two steps: :meth:`Registry.begin_release` marks
it (no claim of that session for the name is granted meanwhile), the hub
tells the router's authorizer and looks at the router's registrations, and
:meth:`Registry.finish_release` lets the name go, or keeps it with the
session when it still holds registrations under the name. So a name is
never handed to another session while one still serves procedures under
it (``docs/security.md``, "Name ownership").

Limits per session: :attr:`Registry.max_names` names, descriptions of at
most :attr:`Registry.max_description` characters; going past either raises
:class:`~sisock.core.errors.BadArgument` naming the argument and the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sisock.core.errors import BadArgument

#: Names one session may own at once (listed or only claimed).
MAX_NAMES_PER_SESSION = 32

#: Longest description ``data_node.add`` accepts, in characters.
MAX_DESCRIPTION = 1024


@dataclass
class Entry:
    """One data-node name.

    Attributes
    ----------
    name : str
    description : str
    session : int
        WAMP session id of the owner.
    listed : bool
        True once ``data_node.add`` succeeded (consumers see it).
    replicable : bool
        True when the first claim came from a replica (shared registration).
    authid : str or None
        The authid of the first claimer of a replicable name; every replica
        must run under it.
    replicas : set of int
        Sessions serving the name besides ``session``.
    releasing : set of int
        Members being released (``data_node.subtract`` in progress).
    """

    name: str
    description: str
    session: int
    listed: bool = False
    replicable: bool = False
    authid: str | None = None
    replicas: set[int] = field(default_factory=set)
    releasing: set[int] = field(default_factory=set)

    def members(self) -> set[int]:
        """Every session serving this name."""
        return {self.session} | self.replicas

    def _leave(self, session: int) -> bool:
        """Forget one member; True when none is left."""
        self.releasing.discard(session)
        if session == self.session:
            if not self.replicas:
                return True
            self.session = min(self.replicas)
            session = self.session  # promoted: no longer one of the others
        self.replicas.discard(session)
        return False

    def public(self) -> dict:
        """The ``{"name", "description"}`` dict consumers receive."""
        return {"name": self.name, "description": self.description}


class Registry:
    """Names, owners and listing state of data nodes.

    Parameters
    ----------
    max_names : int
        Names one session may own at once.
    max_description : int
        Longest description accepted, in characters.
    """

    def __init__(self, max_names: int = MAX_NAMES_PER_SESSION, max_description: int = MAX_DESCRIPTION) -> None:
        self._entries: dict[str, Entry] = {}
        #: Per session, the names it gave up (subtract): never granted to it again, so
        #: its next register or publish under them is refused (until it leaves).
        self._given_up: dict[int, set[str]] = {}
        self.max_names = max_names
        self.max_description = max_description

    def owner(self, name: str) -> int | None:
        """Session id owning ``name``, or None."""
        entry = self._entries.get(name)
        return entry.session if entry else None

    def members(self, name: str) -> set[int]:
        """Every session owning ``name`` (the owner and its replicas)."""
        entry = self._entries.get(name)
        return entry.members() if entry else set()

    def names_of(self, session: int) -> set[str]:
        """Every name ``session`` owns."""
        return {e.name for e in self._entries.values() if self._is_member(e, session)}

    def _is_member(self, entry: Entry, session: int) -> bool:
        return session == entry.session or session in entry.replicas

    def _check_room(self, session: int) -> None:
        """Raise :class:`BadArgument` when ``session`` owns ``max_names`` names already."""
        if len(self._given_up.get(session, ())) >= 32 * self.max_names:
            raise BadArgument(
                f"name: this session gave up {32 * self.max_names} data node names already, "
                "the limit per session; use another session"
            )
        if len(self.names_of(session)) >= self.max_names:
            raise BadArgument(
                f"name: this session owns {self.max_names} data node names already, the "
                f"limit per session; subtract one or use another session"
            )

    def _check_description(self, description: str) -> None:
        if len(description) > self.max_description:
            raise BadArgument(f"description: {len(description)} characters, the limit is {self.max_description}")

    def description(self, name: str) -> str:
        """Description of ``name`` ("" if unknown)."""
        entry = self._entries.get(name)
        return entry.description if entry else ""

    def claim(self, name: str, session: int, replica: bool = False, authid: str | None = None) -> bool:
        """Reserve ``name`` for ``session`` (True if free or already its own).

        With ``replica`` the session asks to serve the name as one of its
        replicas: granted when the name is free (it becomes replicable, for
        ``authid``) or is replicable for the same ``authid``. A session
        being released from the name is refused until the release ends.

        Raises
        ------
        BadArgument
            When the session already owns :attr:`max_names` names.
        """
        if name in self._given_up.get(session, ()):
            return False
        entry = self._entries.get(name)
        if entry is None:
            self._check_room(session)
            self._entries[name] = Entry(
                name, "", session, listed=False, replicable=replica, authid=authid if replica else None
            )
            return True
        if self._is_member(entry, session):
            return session not in entry.releasing
        if replica and entry.replicable and authid is not None and authid == entry.authid:
            self._check_room(session)
            entry.replicas.add(session)
            return True
        return False

    def add(self, name: str, description: str, session: int) -> tuple[bool, bool]:
        """List ``name`` for ``session``.

        Returns
        -------
        ok : bool
            False when another session owns the name (or this one is
            being released from it).
        newly_listed : bool
            True when consumers should be told (it was not listed before).

        Raises
        ------
        BadArgument
            For a description over :attr:`max_description` characters, or a
            new name past :attr:`max_names` for the session.
        """
        description = description or ""
        self._check_description(description)
        if name in self._given_up.get(session, ()):
            return False, False
        entry = self._entries.get(name)
        if entry is not None and not self._is_member(entry, session):
            return False, False
        if entry is not None and session in entry.releasing:
            return False, False
        if entry is None:
            self._check_room(session)
            entry = self._entries[name] = Entry(name, description, session)
        newly = not entry.listed
        entry.listed = True
        if description:
            entry.description = description
        return True, newly

    def begin_release(self, name: str, session: int) -> bool:
        """Start releasing ``session`` from ``name``; False if it is not a member.

        Until :meth:`finish_release`, claims of that session for the name
        are refused, so it gains nothing under the name meanwhile.
        """
        entry = self._entries.get(name)
        if entry is None or not self._is_member(entry, session) or session in entry.releasing:
            return False
        entry.releasing.add(session)
        return True

    def finish_release(self, name: str, session: int, still_registered: bool = False) -> Entry | None:
        """End a release begun with :meth:`begin_release`.

        Parameters
        ----------
        name : str
        session : int
        still_registered : bool
            True when the router still holds registrations of ``session``
            under the name: it keeps the name (a sole owner's name is only
            unlisted), since nobody else could serve it.

        Returns
        -------
        Entry or None
            The entry when consumers should be told the name is gone
            (``data_node_subtracted``), else None.
        """
        entry = self._entries.get(name)
        if entry is None or session not in entry.releasing:
            return None  # the session left meanwhile, or the name is another's now
        entry.releasing.discard(session)
        if still_registered:
            if entry.members() == {session} and entry.listed:
                entry.listed = False
                return entry
            return None
        self._given_up.setdefault(session, set()).add(name)
        if not entry._leave(session):
            return None
        del self._entries[name]
        return entry if entry.listed else None

    def subtract(self, name: str, session: int) -> Entry | None:
        """Remove ``name`` if ``session`` owns it; return the entry if it was listed.

        A replica that subtracts only withdraws itself; the name goes when
        its last member does. (The hub uses :meth:`begin_release` and
        :meth:`finish_release`, with the router's registrations in between.)
        """
        if not self.begin_release(name, session):
            return None
        return self.finish_release(name, session)

    def drop_session(self, session: int) -> list[Entry]:
        """Remove every name of a session that left; return the listed ones."""
        self._given_up.pop(session, None)
        gone = [e for e in self._entries.values() if self._is_member(e, session) and e._leave(session)]
        for e in gone:
            del self._entries[e.name]
        return [e for e in gone if e.listed]

    def listed(self) -> list[dict]:
        """Public dicts of listed nodes, sorted by name."""
        return [e.public() for e in sorted(self._entries.values(), key=lambda e: e.name) if e.listed]

    def restore(self, name: str, session: int) -> None:
        """Re-create a listed entry found in the router after a hub restart."""
        entry = self._entries.get(name)
        if entry is None or entry.session == session:
            self._entries[name] = Entry(name, entry.description if entry else "", session, listed=True)

    def restore_replicas(self, name: str, sessions: list[int], authid: str | None) -> None:
        """Re-create a replicated, listed name found in the router after a hub restart."""
        self.restore_members(name, {s: authid for s in sessions}, replicable=True, listed=True)

    def restore_members(
        self, name: str, sessions: dict[int, str | None], replicable: bool, listed: bool, preferred: int | None = None
    ) -> set[int]:
        """Re-create ``name`` from what the router holds, after a hub restart.

        Parameters
        ----------
        name : str
        sessions : dict
            ``{session: authid}`` of every session the router knows to
            hold the name (registrations under it, or the authorizer's
            memory).
        replicable : bool
            True when the name is served through shared registrations.
        listed : bool
            True when a ``get_data`` procedure is registered under it.
        preferred : int, optional
            The session to keep when several conflict (the one serving
            ``get_data``); default the lowest id.

        Returns
        -------
        set of int
            Sessions that could not be kept as members (a single node's
            name held by several sessions, or replicas under another
            authid): the caller releases them in the authorizer.
        """
        if not sessions:
            return set()
        first = preferred if preferred in sessions else min(sessions)
        if replicable:
            authid = sessions[first]
            kept = {s for s, a in sessions.items() if a is not None and a == authid} | {first}
        else:
            authid = None
            kept = {first}
        self._entries[name] = Entry(
            name,
            self.description(name),
            first,
            listed=listed,
            replicable=replicable,
            authid=authid,
            replicas=kept - {first},
        )
        return set(sessions) - kept

    def replica_counts(self) -> dict[str, int]:
        """``{name: sessions serving it}`` for every listed name."""
        return {e.name: len(e.members()) for e in self._entries.values() if e.listed}
