"""Warren for Python: talk to the Warren kernel from inside an environment.

A program in a Warren environment reaches the kernel only through the descriptor it inherits
(``WARREN_FD``, 3). :class:`Client` is the blocking client, :class:`warren.aio.AsyncClient` the
asyncio one; both carry every operation of the wire protocol (docs/protocol.md): messages
(send, receive with filters, call/reply), batches, capabilities (lookup, attenuate, revoke,
drop, monitor, mailboxes), spawn (spawn, stop, restrict; version 3) and attestation. Errors are exceptions from :mod:`warren.errors`.

    import warren
    with warren.Client() as k:
        echo = k.lookup("echo")
        answer = k.call(echo, b"hello", timeout=5)
"""

from . import errors, protocol
from ._common import Batch, Handle
from .client import Client
from .errors import (
    AttestFailed,
    BadRequest,
    CapabilityError,
    ConnectionClosed,
    Dead,
    EncodeError,
    Expired,
    Full,
    KernelError,
    MailboxError,
    NoConnection,
    NoRight,
    NoSuchHandle,
    NotAllowed,
    NotFound,
    ProtocolError,
    Quota,
    RequestError,
    Revoked,
    SpawnFailed,
    Timeout,
    TooLarge,
    Unavailable,
    UnsupportedError,
    UsedUp,
    VersionMismatch,
    WarrenError,
)
from .protocol import DEFAULT_MAILBOX, GRANT, MONITOR, RECEIVE, SEND, SPAWN, STOP, Delivery, Identity, Run, Spawned

__version__ = "0.1.0"

__all__ = [
    "Client", "Batch", "Handle", "Delivery", "Identity", "Run", "Spawned", "errors", "protocol",
    "DEFAULT_MAILBOX", "SEND", "GRANT", "MONITOR", "RECEIVE", "SPAWN", "STOP",
    "WarrenError", "KernelError", "CapabilityError", "MailboxError", "RequestError",
    "BadRequest", "NoSuchHandle", "NoRight", "Revoked", "Expired", "UsedUp", "Full", "Timeout",
    "NotFound", "Dead", "VersionMismatch", "TooLarge", "Unavailable", "Quota", "AttestFailed",
    "SpawnFailed", "NotAllowed",
    "NoConnection", "ConnectionClosed", "ProtocolError", "EncodeError", "UnsupportedError",
]
