"""Image references, parsed and normalized as docker and containerd do (`docker/reference`'s
grammar and `ParseNormalizedNamed` + `TagNameOnly`): `busybox` is
`docker.io/library/busybox:latest`.

Every error is `errdefs.InvalidArgument`, with docker's wording.
"""

import re
from dataclasses import dataclass

from containerd_py.errdefs import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]*)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
# re.ASCII: Go's \w is [0-9A-Za-z_], Python's would take any Unicode letter.
_REFERENCE_RE = re.compile(rf"({_DOMAIN}/)?({_PATH})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}  # go-digest's algorithms
_HEX_RE = re.compile(r"[a-f0-9]+")


def validate_digest(digest: str) -> str:
    """`digest` if it is a well-formed digest of a known algorithm (go-digest's `Validate`)."""
    algorithm, sep, encoded = digest.partition(":")
    if not sep or not algorithm or not encoded:
        raise InvalidArgument(f"invalid checksum digest format: {digest!r}")
    if algorithm not in _DIGEST_HEX_LENGTH:
        raise InvalidArgument(f"unsupported digest algorithm: {digest!r}")
    if len(encoded) != _DIGEST_HEX_LENGTH[algorithm] or not _HEX_RE.fullmatch(encoded):
        raise InvalidArgument(f"invalid checksum digest length: {digest!r}")
    return digest


@dataclass(frozen=True)
class Reference:
    """A normalized reference: `host` is the registry namespace (`docker.io`,
    `127.0.0.1:5000`), `repository` the path without it (`library/busybox`); a name-only
    reference gets the tag `latest`, a digest-only one keeps no tag."""

    host: str
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repository}"

    @property
    def object(self) -> str:
        """What `/v2/<repository>/manifests/<object>` names: the digest if any, else the tag."""
        return self.digest or self.tag

    def familiar(self) -> str:
        """The short form docker prints: `busybox:latest` for `docker.io/library/busybox:latest`."""
        name = self.name
        if self.host == DEFAULT_DOMAIN:
            name = self.repository.removeprefix(OFFICIAL_REPO_PREFIX)
            if "/" in name:  # docker only drops library/ from single-component paths
                name = self.repository
        return _join(name, self.tag, self.digest)

    def __str__(self) -> str:
        return _join(self.name, self.tag, self.digest)


def _join(name: str, tag: str, digest: str) -> str:
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _split_docker_domain(ref: str) -> tuple[str, str]:
    """Docker's rule: the first component is a host only if it has a `.` or `:` or is
    `localhost`; otherwise the reference is on Docker Hub."""
    first, sep, rest = ref.partition("/")
    if not sep or (not any(c in first for c in ".:") and first != "localhost"):
        domain, remainder = DEFAULT_DOMAIN, ref
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse(ref: str) -> Reference:
    """Parse and normalize `ref` (`busybox`, `127.0.0.1:5000/a/b:tag`, `name@sha256:…`,
    `name:tag@sha256:…`)."""
    if _IDENTIFIER_RE.fullmatch(ref):
        raise InvalidArgument(
            f"invalid repository name ({ref}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_docker_domain(ref)
    remote_name = remainder.partition(":")[0]
    if remote_name.lower() != remote_name:
        raise InvalidArgument(
            f"invalid reference format: repository name must be lowercase: {ref!r}"
        )
    full = f"{domain}/{remainder}"
    m = _REFERENCE_RE.fullmatch(full)
    if m is None:
        if not ref:
            raise InvalidArgument("repository name must have at least one component")
        raise InvalidArgument(f"invalid reference format: {ref!r}")
    host, path, tag, digest = (m.group(1) or "").rstrip("/"), m.group(2), m.group(3), m.group(4)
    if len(f"{host}/{path}") > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if digest:
        validate_digest(digest)
    elif not tag:
        tag = DEFAULT_TAG
    return Reference(host, path, tag or "", digest or "")
