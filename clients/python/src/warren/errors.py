"""Exceptions: one class per error code of the protocol, grouped by family, plus the client's own.

Every exception the package raises is a :class:`WarrenError`. A refusal by the kernel is a
:class:`KernelError` whose class says which code (``exc.code``, ``exc.name``) and whose
``detail`` is the kernel's text (not stable: never parse it). The families:

* :class:`CapabilityError`: the capability cannot be used: :class:`NoSuchHandle`,
  :class:`NoRight`, :class:`Revoked`, :class:`Expired`, :class:`UsedUp`, and
  :class:`NotAllowed` (the template does not allow the spawn asked for, version 3);
* :class:`MailboxError`: the mailbox cannot take it: :class:`Full`, :class:`Dead`;
* :class:`Timeout` (also a :class:`TimeoutError`), :class:`NotFound` (also a
  :class:`LookupError`);
* :class:`RequestError`: :class:`BadRequest`, :class:`VersionMismatch`, :class:`TooLarge`;
* :class:`Unavailable` (the kernel cannot take more), :class:`Quota` (a byte quota, version 3),
  :class:`AttestFailed`, :class:`SpawnFailed` (the child could not be started, version 3).

The client's own failures: :class:`NoConnection`, :class:`ConnectionClosed` (also after
``close()``), :class:`ProtocolError` (undecodable bytes, from either side), :class:`EncodeError`
(a value the protocol cannot carry: a negative timeout, a number outside its field, a string
that is not valid UTF-8, anything over a protocol limit; also a :class:`ValueError`) and
:class:`UnsupportedError` (the agreed protocol version lacks the operation). The one
exception that is not a :class:`WarrenError`: :class:`TypeError`, for an argument of a type
the parameter does not take.
"""

from typing import Dict, Type


class WarrenError(Exception):
    """Base of every exception this package raises."""


class NoConnection(WarrenError):
    """``WARREN_FD`` does not name a usable kernel connection (not inside an environment)."""


class ConnectionClosed(WarrenError, ConnectionError):
    """The kernel closed the connection, or the client was closed (there is no reconnection)."""


class ProtocolError(WarrenError):
    """Bytes that do not decode (docs/protocol.md section 12); ``offset`` locates the fault."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(f"{message} at offset {offset}")
        self.offset = offset


class EncodeError(WarrenError, ValueError):
    """A value the protocol cannot carry (over a limit, out of its field's range, a negative
    timeout, a string that is not valid UTF-8); nothing was sent."""


class UnsupportedError(WarrenError):
    """The protocol version agreed with the kernel lacks the operation (batches need 2; spawn,
    stop and restrict need 3); nothing was sent."""


class KernelError(WarrenError):
    """The kernel refused a request with an error code (docs/protocol.md section 10)."""

    code: int = 0
    name: str = "unknown"

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{self.name}: {detail}" if detail else self.name)
        self.detail = detail


class CapabilityError(KernelError):
    """The capability cannot be used for this."""


class MailboxError(KernelError):
    """The mailbox cannot take the message."""


class RequestError(KernelError):
    """The request makes no sense to the kernel."""


class BadRequest(RequestError):
    code, name = 1, "bad-request"


class NoSuchHandle(CapabilityError):
    code, name = 2, "no-such-handle"


class NoRight(CapabilityError):
    code, name = 3, "no-right"


class Revoked(CapabilityError):
    code, name = 4, "revoked"


class Expired(CapabilityError):
    code, name = 5, "expired"


class UsedUp(CapabilityError):
    code, name = 6, "used-up"


class Full(MailboxError):
    code, name = 7, "full"


class Timeout(KernelError, TimeoutError):
    code, name = 8, "timeout"


class NotFound(KernelError, LookupError):
    code, name = 9, "not-found"


class Dead(MailboxError):
    code, name = 10, "dead"


class VersionMismatch(RequestError):
    code, name = 11, "version"


class TooLarge(RequestError):
    code, name = 12, "too-large"


class Unavailable(KernelError):
    code, name = 13, "unavailable"


class Quota(KernelError):
    """A byte quota would be exceeded (protocol version 3; the detail says whose)."""

    code, name = 14, "quota"


class AttestFailed(KernelError):
    code, name = 20, "attest-failed"


class SpawnFailed(KernelError):
    """The child could not be started (protocol version 3, section 16.1)."""

    code, name = 40, "spawn-failed"


class NotAllowed(CapabilityError):
    """The template does not allow what the spawn asked for (section 16.1)."""

    code, name = 41, "not-allowed"


#: Error code -> exception class, for every code the protocol defines.
BY_CODE: Dict[int, Type[KernelError]] = {
    c.code: c
    for c in (
        BadRequest,
        NoSuchHandle,
        NoRight,
        Revoked,
        Expired,
        UsedUp,
        Full,
        Timeout,
        NotFound,
        Dead,
        VersionMismatch,
        TooLarge,
        Unavailable,
        Quota,
        AttestFailed,
        SpawnFailed,
        NotAllowed,
    )
}


def kernel_error(code: int, detail: str) -> KernelError:
    """The exception for error ``code`` with the kernel's ``detail``."""
    return BY_CODE[code](detail)
