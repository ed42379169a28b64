"""sisock: serve instrument timestreams over WAMP."""
__version__ = "1.0.0.dev0"
