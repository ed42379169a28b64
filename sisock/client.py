"""The notebook client at its public import path: ``from sisock.client import connect``.

The client is :mod:`sisock.wamp.client` (a thin asyncio shell) over the
consumer core (:mod:`sisock.consumer`); its errors are
:mod:`sisock.consumer.errors`. This module re-exports exactly its ``__all__``.
"""

from sisock.wamp.client import *  # noqa: F403 - the public path re-exports the client's __all__
from sisock.wamp.client import __all__  # noqa: F401 - the same names, listed once
