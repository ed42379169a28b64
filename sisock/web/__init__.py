"""``sisock web``: the HTTP bridge and dashboard (one process, read-only).

Modules, one idea each:

* :mod:`~sisock.web.errors` -- the HTTP error carried to the caller as JSON.
* :mod:`~sisock.web.params` -- pure parsing and validation of query
  parameters: times, durations, fields, ``min_stride``, ``method``, format.
* :mod:`~sisock.web.grafana` -- pure Grafana SimpleJSON: request bodies to
  queries, replies to ``timeserie``/``table``/annotations.
* :mod:`~sisock.web.encode` -- pure web-only helpers around the encoder
  registry (:mod:`sisock.core.encoders` makes the JSON, CSV and binary
  frame bodies): bools back as bools, value counts, the frame reader.
* :mod:`~sisock.web.guard` -- pure request policy: the Host allowlist, the
  checks on a request's head, token redaction and redirect, the headers
  every answer carries.
* :mod:`~sisock.web.limits` -- the fair limit on concurrent node calls.
* :mod:`~sisock.web.session` -- thin WAMP shell: the consumer session,
  the hub's node list, calls to nodes, live-topic fan-out.
* :mod:`~sisock.web.http` -- thin ``twisted.web`` shell: routes, token,
  CORS, Server-Sent Events, static files; the request and channel that
  refuse before a body is read and put deadlines on slow clients.
* :mod:`~sisock.web.app` -- the ``sisock web`` command.
"""
