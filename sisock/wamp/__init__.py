"""The WAMP shells: the node service, the notebook client, the 0.x
``DataNodeServer`` layer, the operator-write service and transport settings.

Each is a thin shell that wires a pure core (:mod:`sisock.core`,
:mod:`sisock.consumer`, :mod:`sisock.writes`) to autobahn.
"""
