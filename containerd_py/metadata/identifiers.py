"""containerd's identifier rule, for namespace, lease and container names: safe as a path
component, like a relaxed DNS label."""

import re

from containerd_py.errdefs import InvalidArgument

MAX_LENGTH = 76
_PATTERN = r"^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$"
_IDENTIFIER = re.compile(_PATTERN)


def validate(s: str) -> None:
    if not s:
        raise InvalidArgument("identifier must not be empty")
    if len(s) > MAX_LENGTH:
        raise InvalidArgument(
            f'identifier "{s}" greater than maximum length ({MAX_LENGTH} characters)'
        )
    if not _IDENTIFIER.match(s):
        raise InvalidArgument(f'identifier "{s}" must match {_PATTERN}')
