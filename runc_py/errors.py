"""The two kinds of failure runc reports, bad usage and an operation that failed (runc's
`fatal` / `fatalWithCode` in utils.go), and how a system error is worded for them."""


class UsageError(Exception):
    """Wrong flags or arguments (runc prints usage and exits 1)."""


class RuntimeErr(Exception):
    """An operation failed; the message is what runc would log, `code` the exit status."""

    def __init__(self, msg: str, code: int = 1) -> None:
        super().__init__(msg)
        self.code = code


def describe(e: BaseException) -> str:
    """An error as runc would word it: no "[Errno N]", the path where the call names one."""
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e) or type(e).__name__
