"""containerd_py.client.platforms: parse, normalize, match and order as containerd does."""

import platform as host

import pytest

from containerd_py.client import platforms
from containerd_py.client.platforms import Platform
from containerd_py.errdefs import InvalidArgument, NotFound

HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(host.machine(), host.machine())


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/x86_64", Platform("linux", "amd64")),
        ("Linux/AMD64", Platform("linux", "amd64")),
        ("linux/amd64/v3", Platform("linux", "amd64", "v3")),
        ("linux/amd64/v1", Platform("linux", "amd64")),
        ("linux/arm64", Platform("linux", "arm64")),
        ("linux/aarch64", Platform("linux", "arm64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("linux/arm", Platform("linux", "arm")),
        ("linux/arm/v7", Platform("linux", "arm", "v7")),
        ("linux/armhf", Platform("linux", "arm")),
        ("linux/armel", Platform("linux", "arm", "v6")),
        ("linux/arm/7", Platform("linux", "arm", "v7")),
        ("linux/i386", Platform("linux", "386")),
        ("windows/amd64", Platform("windows", "amd64")),
        ("macos/arm64", Platform("darwin", "arm64")),
        ("s390x", Platform("linux", "s390x")),
        ("aarch64", Platform("linux", "arm64")),
    ],
)
def test_parse(spec: str, expected: Platform) -> None:
    assert platforms.parse(spec) == expected


def test_parse_os_only_is_this_host() -> None:
    assert platforms.parse("linux").architecture == HOST_ARCH
    assert platforms.default_spec().os == "linux"
    assert platforms.default_spec().architecture == HOST_ARCH


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("linux/*", "wildcards"),
        ("linux//amd64", "invalid component"),
        ("linux/amd 64", "invalid component"),
        ("nosuchthing", "unknown operating system or architecture"),
        ("linux/arm/v7/x", "cannot parse"),
    ],
)
def test_parse_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        platforms.parse(spec)


def test_format_and_dicts() -> None:
    assert str(Platform("linux", "arm64", "v8")) == "linux/arm64/v8"
    assert str(Platform("", "amd64")) == "unknown"
    d = {"os": "linux", "architecture": "arm", "variant": "v7", "os.features": ["x"]}
    assert Platform.from_dict(d).to_dict() == d


def test_only_runs_older_variants_and_compatible_architectures() -> None:
    assert [str(p) for p in platforms.only(Platform("linux", "amd64", "v3")).platforms] == [
        "linux/amd64/v3",
        "linux/amd64/v2",
        "linux/amd64",  # v1 is normalized away
        "linux/386",
    ]
    arm64 = platforms.only(platforms.parse("linux/arm64"))
    assert [str(p) for p in arm64.platforms] == [
        "linux/arm64",
        "linux/arm/v8",
        "linux/arm/v7",
        "linux/arm/v6",
        "linux/arm/v5",
    ]
    assert arm64.match(Platform("linux", "aarch64", "8"))
    assert arm64.match(Platform("linux", "arm", "v7"))
    assert not arm64.match(Platform("linux", "amd64"))
    assert arm64.less(Platform("linux", "arm64"), Platform("linux", "arm", "v7"))
    assert not arm64.less(Platform("linux", "arm", "v7"), Platform("linux", "arm64"))
    assert arm64.less(Platform("linux", "arm", "v5"), Platform("windows", "arm64"))
    strict = platforms.only_strict(Platform("linux", "arm64"))
    assert not strict.match(Platform("linux", "arm", "v7"))


def _desc(digest: str, spec: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {"digest": digest}
    if spec:
        out["platform"] = platforms.parse(spec).to_dict()
    return out


def test_select_orders_an_index_best_first() -> None:
    index = [
        _desc("ppc", "linux/ppc64le"),
        _desc("none"),
        _desc("arm7", "linux/arm/v7"),
        _desc("arm64", "linux/arm64/v8"),
        _desc("arm64-again", "linux/arm64"),
        _desc("win", "windows/arm64"),
    ]
    matcher = platforms.only(platforms.parse("linux/arm64"))
    assert [d["digest"] for d in matcher.select(index)] == ["arm64", "arm64-again", "arm7", "none"]
    assert matcher.best(index)["digest"] == "arm64"
    assert (
        platforms.default().best([_desc("x", "linux/ppc64le"), _desc("h", f"linux/{HOST_ARCH}")])[
            "digest"
        ]
        == "h"
    )
    with pytest.raises(NotFound, match="no match for platform"):
        platforms.only(platforms.parse("linux/s390x")).best(index[:1])
