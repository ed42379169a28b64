"""A consumer written the sisock 0.x way: autobahn ``ApplicationRunner``.

``ApplicationRunner`` limits incoming WebSocket messages to 1 MiB, which no
node or router can see. Run as ``python tests/runner_client.py SERIALIZER``
with a JSON list of calls on stdin, each ``{"uri", "args", "kwargs",
"progress": bool}``; prints one JSON line per call (``{"ok": summary}`` or
``{"error": uri, "message": text}``), then ``{"alive": true}`` if the
session is still joined at the end. Used by tests/test_reply_size.py.
"""

import json
import os
import sys

import sisock  # noqa: F401  (keeps autobahn's broken optional bjdata import quiet)
from autobahn.twisted.wamp import ApplicationRunner, ApplicationSession
from autobahn.wamp import auth
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import CallOptions

from sisock.site.settings import load_settings

SERIALIZERS = {"json": JsonSerializer, "msgpack": MsgPackSerializer, "cbor": CBORSerializer}
settings = load_settings("consumer")
calls = json.load(sys.stdin)


def summary(value, parts):
    """Sizes of what arrived: arrays per field and timeline, parts received."""
    if not isinstance(value, dict):
        return {"value": value, "parts": parts}
    data = {
        k: (len(v) if isinstance(v, list) else v.get("total", len(v.get("data", b""))))
        for k, v in value.get("data", {}).items()
    }
    return {"data": data, "timelines": sorted(value.get("timeline", {})), "parts": parts}


class Session(ApplicationSession):
    """Makes the calls in order and reports each outcome."""

    def onConnect(self):
        self.join(self.config.realm, ["wampcra"], settings.user)

    def onChallenge(self, challenge):
        return auth.compute_wcs(settings.secret, challenge.extra["challenge"])

    async def onJoin(self, details):
        for c in calls:
            parts = []
            kwargs = dict(c.get("kwargs", {}))
            if c.get("progress"):
                kwargs["options"] = CallOptions(on_progress=lambda p: parts.append(summary(p, 0)))
            try:
                r = await self.call(c["uri"], *c.get("args", []), **kwargs)
                print(json.dumps({"ok": summary(r, len(parts) + 1)}), flush=True)
            except ApplicationError as exc:
                print(json.dumps({"error": exc.error, "message": str(exc.args[0] if exc.args else exc)}), flush=True)
        print(json.dumps({"alive": self.is_attached()}), flush=True)
        self.leave()

    def onLeave(self, details):
        print(json.dumps({"left": str(details.reason), "message": details.message}), flush=True)
        self.disconnect()

    def onDisconnect(self):
        from twisted.internet import reactor

        if reactor.running:
            reactor.stop()


if __name__ == "__main__":
    ser = SERIALIZERS[sys.argv[1]]()
    ApplicationRunner(settings.router_url, settings.realm, serializers=[ser]).run(Session)
    os._exit(0)
