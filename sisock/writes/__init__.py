"""Operator writes, sans I/O: declared points and their checks
(:mod:`sisock.writes.rules`) and the durable audit log
(:mod:`sisock.writes.audit`). The WAMP shell is :mod:`sisock.wamp.operator`.
"""
