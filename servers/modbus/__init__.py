"""``sisock serve modbus``: poll a Modbus TCP instrument, archive and serve it.

The server surface (:mod:`sisock.cli.serve`) is :mod:`.node`; the parts are
:mod:`.config`, :mod:`.decode`, :mod:`.expr`, :mod:`.poller`,
:mod:`.archiving` and, for tests and demos, :mod:`.simulator`.
"""

from .server import HELP, REACTOR, add_arguments, build

__all__ = ["HELP", "REACTOR", "add_arguments", "build"]
