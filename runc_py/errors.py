"""The two kinds of failure runc reports: bad usage, and an operation that failed."""


class UsageError(Exception):
    """Wrong flags or arguments (runc prints usage and exits 1)."""


class RuntimeErr(Exception):
    """An operation failed; the message is what runc would log, `code` the exit status."""

    def __init__(self, msg: str, code: int = 1) -> None:
        super().__init__(msg)
        self.code = code
