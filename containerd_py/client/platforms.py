"""Platforms as containerd's `platforms` package has them: parse `linux/arm64/v8`, normalize
(`x86_64` is `amd64`, `aarch64` is `arm64`), match, and order an index's manifests so the
best one for this host comes first (`platforms.Only` / `Default`, `images.LimitManifests`).
"""

import functools
import platform as _host
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from containerd_py.errdefs import InvalidArgument, NotFound

_SPECIFIER_RE = re.compile(r"[A-Za-z0-9_-]+")
_KNOWN_OS = frozenset(
    [
        "aix",
        "android",
        "darwin",
        "dragonfly",
        "freebsd",
        "hurd",
        "illumos",
        "ios",
        "js",
        "linux",
        "nacl",
        "netbsd",
        "openbsd",
        "plan9",
        "solaris",
        "windows",
        "zos",
    ]
)
_KNOWN_ARCH = frozenset(
    [
        "386",
        "amd64",
        "amd64p32",
        "arm",
        "armbe",
        "arm64",
        "arm64be",
        "ppc64",
        "ppc64le",
        "loong64",
        "mips",
        "mipsle",
        "mips64",
        "mips64le",
        "mips64p32",
        "mips64p32le",
        "ppc",
        "riscv",
        "riscv64",
        "s390",
        "s390x",
        "sparc",
        "sparc64",
        "wasm",
    ]
)
# uname -m -> GOARCH, the names image indexes use
_MACHINE_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "386",
    "i686": "386",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "loongarch64": "loong64",
}
# /proc/cpuinfo "CPU architecture" -> variant (containerd's getCPUVariant)
_CPU_VARIANT = {"8": "v8", "aarch64": "v8", "7": "v7", "7m": "v7", "6": "v6", "6tej": "v6"}
_CPU_VARIANT |= {f"?({n})": "v7" for n in range(12, 18)}
_CPU_VARIANT |= {"5": "v5", "5t": "v5", "5te": "v5", "5tej": "v5", "4": "v4", "4t": "v4"}
_CPU_VARIANT |= {"3": "v3"}


@dataclass(frozen=True)
class Platform:
    """An OCI platform (`os`, `architecture`, `variant`; the rest only carried along)."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Platform":
        """From a descriptor's `platform` or an image config (`os`, `architecture`, …)."""
        return cls(
            os=str(d.get("os", "")),
            architecture=str(d.get("architecture", "")),
            variant=str(d.get("variant", "")),
            os_version=str(d.get("os.version", "")),
            os_features=tuple(d.get("os.features") or ()),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        """containerd's `Format`: `linux/arm64/v8`."""
        if not self.os:
            return "unknown"
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _host_arch() -> str:
    machine = _host.machine().lower()
    return _MACHINE_ARCH.get(machine, machine)


@functools.cache
def _cpu_variant() -> str:
    """The host's arm variant from /proc/cpuinfo; empty on other architectures."""
    arch = _host_arch()
    if arch not in ("arm", "arm64"):
        return ""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep:
                    fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        return ""
    variant = fields.get("cpu architecture", "")
    model = fields.get("model name", "").lower()
    if arch == "arm" and variant == "7" and model.startswith("armv6-compatible"):
        variant = "6"
    return _CPU_VARIANT.get(variant.lower(), "unknown") if variant else ""


def _normalize_os(os_name: str) -> str:
    if not os_name:
        return "linux"
    os_name = os_name.lower()
    return "darwin" if os_name == "macos" else os_name


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", "" if variant in ("8", "v8") else variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
    return arch, variant


def normalize(p: Platform) -> Platform:
    arch, variant = _normalize_arch(p.architecture, p.variant)
    return Platform(_normalize_os(p.os), arch, variant, p.os_version, p.os_features)


def parse(specifier: str) -> Platform:
    """`linux`, `amd64`, `linux/arm64`, `linux/arm/v7`; a missing part is the host's."""
    if "*" in specifier:
        raise InvalidArgument(f"{specifier!r}: wildcards not yet supported")
    parts = specifier.split("/")
    for part in parts:
        if not _SPECIFIER_RE.fullmatch(part):
            raise InvalidArgument(
                f"{part!r} is an invalid component of {specifier!r}: platform specifier "
                f"component must match {_SPECIFIER_RE.pattern!r}"
            )
    if len(parts) == 1:
        os_name = _normalize_os(parts[0])
        if os_name in _KNOWN_OS:
            arch, variant = _host_arch(), _cpu_variant()
            return Platform(os_name, arch, variant if arch == "arm" and variant != "v7" else "")
        arch, variant = _normalize_arch(parts[0], "")
        if arch == "arm" and variant == "v7":
            variant = ""
        if arch in _KNOWN_ARCH:
            return Platform("linux", arch, variant)
        raise InvalidArgument(f"{specifier!r}: unknown operating system or architecture")
    if len(parts) == 2:
        arch, variant = _normalize_arch(parts[1], "")
        if arch == "arm" and variant == "v7":
            variant = ""
        return Platform(_normalize_os(parts[0]), arch, variant)
    if len(parts) == 3:
        arch, variant = _normalize_arch(parts[1], parts[2])
        if arch == "arm64" and not variant:
            variant = "v8"
        return Platform(_normalize_os(parts[0]), arch, variant)
    raise InvalidArgument(f"{specifier!r}: cannot parse platform specifier")


def default_spec() -> Platform:
    """This host: linux, its architecture, and on arm its variant."""
    return Platform("linux", _host_arch(), _cpu_variant())


def _vector(p: Platform) -> list[Platform]:
    """`p` then the platforms it can also run, best first (amd64/v3 runs v2, v1 and 386;
    arm64 runs arm v8 down to v5)."""
    out = [p]
    number = p.variant.removeprefix("v")
    if p.architecture == "amd64":
        if number.isdigit():
            out += [Platform(p.os, "amd64", f"v{v}") for v in range(int(number) - 1, 0, -1)]
        out.append(Platform(p.os, "386"))
    elif p.architecture == "arm":
        if number.isdigit():
            out += [Platform(p.os, "arm", f"v{v}") for v in range(int(number) - 1, 4, -1)]
    elif p.architecture == "arm64":
        out += _vector(Platform(p.os, "arm", p.variant or "v8"))
    return out


class MatchComparer:
    """Matches platforms against an ordered list; earlier in the list is better."""

    def __init__(self, platforms: Sequence[Platform]) -> None:
        self.platforms = [normalize(p) for p in platforms]

    def rank(self, p: Platform) -> int | None:
        """The position of the first listed platform `p` matches, None if none."""
        n = normalize(p)
        for i, want in enumerate(self.platforms):
            if (want.os, want.architecture, want.variant) == (n.os, n.architecture, n.variant):
                return i
        return None

    def match(self, p: Platform) -> bool:
        return self.rank(p) is not None

    def less(self, p1: Platform, p2: Platform) -> bool:
        """Whether `p1` is preferred to `p2`."""
        r1, r2 = self.rank(p1), self.rank(p2)
        return r1 is not None and (r2 is None or r1 < r2)

    def select(self, manifests: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """An index's manifest descriptors that match, best first; those without a platform
        are kept, last (containerd's FilterPlatforms + LimitManifests). Ties keep index order."""
        with_rank: list[tuple[int, int, Mapping[str, Any]]] = []
        for pos, desc in enumerate(manifests):
            if "platform" not in desc:
                with_rank.append((len(self.platforms), pos, desc))
            elif (r := self.rank(Platform.from_dict(desc["platform"]))) is not None:
                with_rank.append((r, pos, desc))
        return [desc for _, _, desc in sorted(with_rank, key=lambda t: (t[0], t[1]))]

    def best(self, manifests: Iterable[Mapping[str, Any]]) -> Mapping[str, Any]:
        """The best manifest descriptor of an index for these platforms."""
        found = self.select(manifests)
        if not found:
            raise NotFound(f"no match for platform {self} in manifest")
        return found[0]

    def __str__(self) -> str:
        return ",".join(str(p) for p in self.platforms)


def only(p: Platform) -> MatchComparer:
    """`p` and what it can run (containerd's `platforms.Only`)."""
    return MatchComparer(_vector(normalize(p)))


def only_strict(p: Platform) -> MatchComparer:
    return MatchComparer([p])


def default() -> MatchComparer:
    """What this host runs (containerd's `platforms.Default`)."""
    return only(default_spec())
