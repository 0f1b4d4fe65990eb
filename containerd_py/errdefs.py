"""containerd's error classes (its `errdefs` package), independent of the transport.

Every store and service raises these; the gRPC boundary turns each into its status code
(`server.py`), and `containerd_py.client` turns a status code back into the same class, so a
caller on either side of the socket writes `except NotFound`.
"""


class ContainerdError(Exception):
    """Base class: `code` is the gRPC status code's name (`grpc.StatusCode[code]`)."""

    code = "UNKNOWN"


class InvalidArgument(ContainerdError):
    code = "INVALID_ARGUMENT"


class NotFound(ContainerdError):
    code = "NOT_FOUND"


class AlreadyExists(ContainerdError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(ContainerdError):
    code = "FAILED_PRECONDITION"


class Unavailable(ContainerdError):
    code = "UNAVAILABLE"


class NotImplemented_(ContainerdError):
    code = "UNIMPLEMENTED"


class Aborted(ContainerdError):
    code = "ABORTED"


class ResourceExhausted(ContainerdError):
    code = "RESOURCE_EXHAUSTED"


class OutOfRange(ContainerdError):
    code = "OUT_OF_RANGE"


class Internal(ContainerdError):
    code = "INTERNAL"


BY_CODE: dict[str, type[ContainerdError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Unavailable,
        NotImplemented_,
        Aborted,
        ResourceExhausted,
        OutOfRange,
        Internal,
    )
}
