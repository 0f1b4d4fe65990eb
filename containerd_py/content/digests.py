"""Digest strings (`algorithm:hex`), checked the way go-digest's `Digest.Validate` does.

Only sha256 is stored: it is the canonical algorithm every writer computes, as in containerd.
"""

import re

from containerd_py.errdefs import InvalidArgument, NotImplemented_

# go-digest's DigestRegexpAnchored: tells a malformed digest from an unknown algorithm.
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_SHA256_HEX = re.compile(r"[a-f0-9]{64}")
# Algorithms containerd accepts but this store does not keep.
_UNSUPPORTED_KNOWN = {"sha384", "sha512"}


def sha256_hex(digest: str) -> str:
    """The hex part of a valid `sha256:` digest; InvalidArgument with go-digest's reason otherwise."""
    algorithm, sep, encoded = digest.partition(":")
    if not sep or not algorithm or not encoded:
        raise InvalidArgument(f"{digest}: invalid checksum digest format")
    if algorithm in _UNSUPPORTED_KNOWN:
        raise NotImplemented_(f"{digest}: digest algorithm {algorithm} not supported")
    if algorithm != "sha256":
        if not _DIGEST.fullmatch(digest):
            raise InvalidArgument(f"{digest}: invalid checksum digest format")
        raise InvalidArgument(f"{digest}: unsupported digest algorithm")
    if len(encoded) != 64:
        raise InvalidArgument(f"{digest}: invalid checksum digest length")
    if not _SHA256_HEX.fullmatch(encoded):
        raise InvalidArgument(f"{digest}: invalid checksum digest format")
    return encoded
