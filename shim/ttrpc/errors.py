"""Status codes and the error every ttrpc call fails with, like containerd/ttrpc errors.go.

ttrpc carries gRPC's `google.rpc.Status` in each response, so the codes are gRPC's
(google.golang.org/grpc/codes): a handler raises `TTRPCError(Code.NOT_FOUND, "...")` and the
client on the other side raises the same code and message back.
"""

import enum


class Code(enum.IntEnum):
    """gRPC status codes, by their wire numbers."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


def code_name(code: int) -> str:
    try:
        return Code(code).name
    except ValueError:
        return f"CODE({code})"


class TTRPCError(Exception):
    """A call that ended with a non-OK status. Raise it in a handler to choose the code the
    client sees; the client raises it with the code and message the server sent."""

    def __init__(self, code: int, message: str = "") -> None:
        self.code: int = Code(code) if code in Code._value2member_map_ else code
        self.message = message
        super().__init__(code, message)

    def __str__(self) -> str:
        # The same text as a Go status error, which is what containerd logs and returns.
        return f"rpc error: code = {code_name(self.code)} desc = {self.message}"

    def __repr__(self) -> str:
        return f"TTRPCError({code_name(self.code)}, {self.message!r})"


class DeadlineExceeded(TTRPCError, TimeoutError):
    """The client stopped waiting: the call's timeout passed before its response came."""

    def __init__(self, message: str = "context deadline exceeded") -> None:
        super().__init__(Code.DEADLINE_EXCEEDED, message)


class ClosedError(TTRPCError, ConnectionError):
    """The connection is closed (ttrpc's ErrClosed): the call got no response and never will."""

    def __init__(self, message: str = "ttrpc: closed") -> None:
        super().__init__(Code.UNAVAILABLE, message)


def from_exception(exc: BaseException) -> TTRPCError:
    """The status a handler's exception becomes, like ttrpc's convertCode: a TTRPCError keeps
    its code; a few OS errors map to their gRPC counterparts; anything else is UNKNOWN with the
    exception's text (never a traceback: ARCHITECTURE.md rule 4)."""
    if isinstance(exc, TTRPCError):
        return exc
    text = str(exc) or type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        return TTRPCError(Code.NOT_FOUND, text)
    if isinstance(exc, FileExistsError):
        return TTRPCError(Code.ALREADY_EXISTS, text)
    if isinstance(exc, PermissionError):
        return TTRPCError(Code.PERMISSION_DENIED, text)
    if isinstance(exc, TimeoutError):
        return TTRPCError(Code.DEADLINE_EXCEEDED, text)
    if isinstance(exc, NotImplementedError):
        return TTRPCError(Code.UNIMPLEMENTED, text)
    return TTRPCError(Code.UNKNOWN, text)
