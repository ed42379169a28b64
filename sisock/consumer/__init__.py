"""The consumer side of the protocol, sans I/O: call arguments, the 0.x
fallback, streamed parts into one result, and typed errors.

Both consumers — the notebook client (asyncio) and the web bridge
(Twisted) — are thin shells around these modules.
"""
