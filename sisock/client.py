"""The notebook client at its public import path: ``from sisock.client import connect``.

The client is :mod:`sisock.wamp.client` (a thin asyncio shell) over the
consumer core (:mod:`sisock.consumer`); its errors are
:mod:`sisock.consumer.errors`.
"""

from sisock.wamp.client import (
    AuthenticationFailed,
    CallTimeout,
    Client,
    ClientError,
    Conflict,
    DataResult,
    DeviceUnavailable,
    Expired,
    NodeUnknown,
    NotAuthorized,
    OutOfLimits,
    RateLimited,
    RemoteError,
    RouterUnreachable,
    TimelineData,
    TooMuchDataError,
    UnknownPoint,
    WriteBadArgument,
    WriteRefused,
    connect,
)

__all__ = [
    "connect",
    "Client",
    "DataResult",
    "TimelineData",
    "ClientError",
    "RouterUnreachable",
    "AuthenticationFailed",
    "NodeUnknown",
    "RemoteError",
    "CallTimeout",
    "TooMuchDataError",
    "WriteRefused",
    "NotAuthorized",
    "UnknownPoint",
    "OutOfLimits",
    "Conflict",
    "Expired",
    "RateLimited",
    "DeviceUnavailable",
    "WriteBadArgument",
]
