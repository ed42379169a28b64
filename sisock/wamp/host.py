"""Several data nodes in one process, each with its own session, threads and faults.

``sisock serve`` runs every :class:`~sisock.core.plan.Plan` a server built
(one per archive directory, one per Modbus device) in one Twisted reactor.
A process costs tens of MiB before it serves anything (the interpreter,
numpy, Twisted, autobahn, h5py); a node in a shared process costs what its
core holds. Each node still gets:

* its own :class:`~sisock.wamp.service.NodeService`: its own connection
  and WAMP session, name, registrations and hub entry, reconnecting on its
  own, exactly as if it ran alone;
* its own thread pool for its core's blocking calls (at most
  :data:`NODE_THREADS` threads, started only when calls overlap), so a
  core that blocks (a hung disk, a query that runs for minutes) holds up
  only its own calls;
* guarded hooks: a ``warm``, ``start`` or ``stop`` hook that raises is
  logged with the node's name and the other nodes go on. A node whose
  warm-up failed still serves (its core loads what it needs on the first
  call); a node whose ``start`` failed (e.g. its poller) still answers
  from what it has.

What a core raises during a call reaches only that caller, as
``{base}.error.internal`` naming the node (:class:`NodeService`). A node
whose name another session serves stops alone; the process keeps serving
the others and exits with status 3 when it stops.

What the nodes share: the reactor thread (hooks and callbacks must not
block it, as for one node), the process's memory and the log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.logger import Logger

from sisock.core.errors import BadArgument
from sisock.core.plan import Plan
from sisock.site.settings import Settings

from .service import NodeService, run_nodes

log = Logger(namespace="sisock.wamp.host")

#: Most threads one node's blocking calls use at once (created on demand).
NODE_THREADS = 8


def check_names(plans: Sequence[Plan]) -> None:
    """Refuse two plans with the same node name (one process cannot serve a name twice).

    Raises
    ------
    BadArgument
        Naming the duplicate.
    """
    seen: set[str] = set()
    for plan in plans:
        name = plan.core.name
        if name in seen:
            raise BadArgument(f"node name {name!r} is given twice; every node of a process needs its own name")
        seen.add(name)


class NodeHost:
    """Serve several plans in one reactor.

    Parameters
    ----------
    plans : sequence of Plan
        One per node, names unique.
    settings : Settings
        Router, realm and credentials (role ``server``), shared by the nodes.
    threads : int
        Most threads of each node's pool.
    """

    def __init__(self, plans: Sequence[Plan], settings: Settings, threads: int = NODE_THREADS) -> None:
        from twisted.python.threadpool import ThreadPool

        if not plans:
            raise BadArgument("no data node to serve")
        check_names(plans)
        self.plans = list(plans)
        self.services: list[NodeService] = []
        for plan in self.plans:
            pool = ThreadPool(0, threads, name=f"node {plan.core.name}")
            self.services.append(NodeService(plan.core, settings, replica=plan.replica, threadpool=pool))

    def schedule(self) -> None:
        """Ask the reactor to start each node's pool and hooks once it runs."""
        from twisted.internet import reactor

        for plan, service in zip(self.plans, self.services):
            name = plan.core.name
            pool = service.threadpool
            if pool is not None:
                reactor.callWhenRunning(pool.start)
                reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
            for work in plan.warm:
                reactor.callWhenRunning(self._warm, service, work)
            for start in plan.start:
                reactor.callWhenRunning(guarded, name, "start", start, service.publish_live)
            for stop in plan.stop:
                reactor.addSystemEventTrigger("before", "shutdown", guarded, name, "stop", stop)

    @staticmethod
    def _warm(service: NodeService, work: Callable[[], object]) -> None:
        name = service.node.name

        def failed(failure) -> None:
            log.failure(
                "node {name!r}: warm-up failed; it serves anyway and loads what it needs on the first call",
                failure,
                name=name,
            )

        service.in_thread(work).addErrback(failed)

    def run(self, log_level: str = "info") -> int:
        """Run the reactor until every node stops (blocks).

        Returns
        -------
        int
            0, or 3 when a node's name was served by another session.
        """
        self.schedule()
        run_nodes(self.services, log_level)
        return 3 if any(s.failed for s in self.services) else 0


def guarded(name: str, what: str, hook: Callable[..., object], *args: object) -> object:
    """Call ``hook(*args)``; log what it raises (with the node's name) instead of raising."""
    try:
        return hook(*args)
    except Exception:
        log.failure("node {name!r}: {what} failed; the other nodes go on", name=name, what=what)
        return None
