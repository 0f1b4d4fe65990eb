"""containerd_py.client.reference: docker's normalization and grammar."""

import pytest

from containerd_py.client.reference import Reference, parse, validate_digest
from containerd_py.errdefs import InvalidArgument

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("ref", "host", "repository", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", ""),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", ""),
        ("library/busybox", "docker.io", "library/busybox", "latest", ""),
        ("docker.io/busybox", "docker.io", "library/busybox", "latest", ""),
        ("index.docker.io/user/app:v1", "docker.io", "user/app", "v1", ""),
        ("user/app", "docker.io", "user/app", "latest", ""),
        (
            "127.0.0.1:5000/library/busybox:latest",
            "127.0.0.1:5000",
            "library/busybox",
            "latest",
            "",
        ),
        ("localhost/app", "localhost", "app", "latest", ""),
        ("localhost:5000/a/b/c:t", "localhost:5000", "a/b/c", "t", ""),
        ("Registry.Example.com/app", "Registry.Example.com", "app", "latest", ""),
        ("ghcr.io/o/app_x-y.z__w:T_1.2-3", "ghcr.io", "o/app_x-y.z__w", "T_1.2-3", ""),
        (f"busybox@{DIGEST}", "docker.io", "library/busybox", "", DIGEST),
        (f"busybox:1@{DIGEST}", "docker.io", "library/busybox", "1", DIGEST),
        (f"quay.io/a/b:t@{DIGEST}", "quay.io", "a/b", "t", DIGEST),
    ],
)
def test_parse_normalizes(ref: str, host: str, repository: str, tag: str, digest: str) -> None:
    parsed = parse(ref)
    assert parsed == Reference(host, repository, tag, digest)
    assert parsed.name == f"{host}/{repository}"
    assert parsed.object == (digest or tag)
    assert parse(str(parsed)) == parsed  # the normalized string is a fixed point


def test_str_and_familiar() -> None:
    assert str(parse("busybox")) == "docker.io/library/busybox:latest"
    assert str(parse(f"busybox:1@{DIGEST}")) == f"docker.io/library/busybox:1@{DIGEST}"
    assert parse("busybox").familiar() == "busybox:latest"
    assert parse("user/app:v1").familiar() == "user/app:v1"
    assert parse("library/a/b").familiar() == "library/a/b:latest"
    assert parse(f"busybox@{DIGEST}").familiar() == f"busybox@{DIGEST}"
    assert parse("127.0.0.1:5000/x:y").familiar() == "127.0.0.1:5000/x:y"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("", "at least one component"),
        ("Busybox", "must be lowercase"),
        ("docker.io/Library/busybox", "must be lowercase"),
        ("ab" * 32, "cannot specify 64-byte hexadecimal strings"),
        ("busybox:", "invalid reference format"),
        ("busybox:-tag", "invalid reference format"),
        ("busybox:" + "t" * 129, "invalid reference format"),
        ("a//b", "invalid reference format"),
        ("-busybox", "invalid reference format"),
        ("busybox@sha256:abc", "invalid reference format"),
        ("http://registry/app", "invalid reference format"),
        ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("busybox@sha256:" + "a" * 63 + "g", "invalid reference format"),
        ("busybox@sha256:" + "A" * 64, "invalid checksum digest length"),
        ("busybox@sha256:" + "a" * 65, "invalid checksum digest length"),
        ("example.com/" + "a" * 250, "must not be more than 255 characters"),
    ],
)
def test_invalid_references(ref: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse(ref)


def test_validate_digest() -> None:
    assert validate_digest(DIGEST) == DIGEST
    assert validate_digest("sha512:" + "0" * 128).startswith("sha512:")
    for bad in ("sha256", "sha256:", ":abc", "sha256:../../x", "sha384:" + "0" * 64):
        with pytest.raises(InvalidArgument):
            validate_digest(bad)
