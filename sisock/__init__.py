"""sisock: serve instrument timestreams over WAMP.

Importing the package keeps one broken optional import quiet: autobahn
tries ``bjdata`` (UBJSON), whose wheel is built for NumPy 1.x and prints a
long traceback under NumPy 2 before failing. sisock never uses UBJSON, so
:func:`sisock._quiet.silence_bjdata` makes that import fail cleanly, before
any sisock module imports autobahn.
"""

from ._quiet import silence_bjdata

__version__ = "1.0.0.dev0"

silence_bjdata()
