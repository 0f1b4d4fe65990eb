"""The busybox test image, built locally: it stands in for `docker pull busybox` + `docker save`
(and for `umoci` / `runc spec` when making a bundle) on a machine with no internet.

Everything is deterministic: tar members are sorted with mtime 0 and owner 0:0, gzip headers carry
mtime 0 and JSON is canonical, so the same inputs always give the same digests.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

BUSYBOX = Path("/usr/bin/busybox")
DEFAULT_REF = "docker.io/library/busybox:latest"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EPOCH = "1970-01-01T00:00:00Z"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OPAQUE = ".wh..wh..opq"

DIRS = {
    "bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o555, "root": 0o700,
    "run": 0o755, "sbin": 0o755, "sys": 0o555, "tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755,
    "usr/sbin": 0o755, "var": 0o755, "var/log": 0o755, "var/tmp": 0o1777,
}  # fmt: skip
ETC = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "nobody:x:65534:65534:nobody:/home:/bin/false\n",
    "etc/group": "root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n",
    "etc/hostname": "stacklab\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
}


class Entry(NamedTuple):
    """One filesystem object of a layer: kind is "dir", "file" or "symlink"."""

    path: str
    kind: str
    mode: int
    data: bytes = b""  # file content, or the symlink target


@dataclass
class ImageInfo:
    layout: Path
    ref: str
    manifest_digest: str
    manifest_size: int
    config_digest: str
    layer_digests: list[str] = field(default_factory=list)
    diff_ids: list[str] = field(default_factory=list)

    @property
    def index_path(self) -> Path:
        return self.layout / "index.json"


def rootfs_entries() -> list[Entry]:
    """The base layer: busybox, one symlink per applet in /bin, the directories and /etc."""
    out = [Entry(path, "dir", mode) for path, mode in DIRS.items()]
    out.append(Entry("bin/busybox", "file", 0o755, BUSYBOX.read_bytes()))
    listing = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    for applet in sorted(set(listing.stdout.split())):
        if applet != "busybox" and "/" not in applet:
            out.append(Entry(f"bin/{applet}", "symlink", 0o777, b"busybox"))
    out += [Entry(path, "file", 0o644, text.encode()) for path, text in ETC.items()]
    return sorted(out)


def build_rootfs(dest: Path) -> None:
    """Write the busybox rootfs as a directory (an OCI bundle's rootfs)."""
    dest.mkdir(parents=True, exist_ok=True)
    for e in rootfs_entries():
        target = dest / e.path
        if e.kind == "dir":
            target.mkdir(exist_ok=True)
            os.chmod(target, e.mode)
        elif e.kind == "symlink":
            if target.is_symlink():
                target.unlink()
            os.symlink(e.data.decode(), target)
        else:
            target.write_bytes(e.data)
            os.chmod(target, e.mode)


def layer_entries(
    changes: Sequence[tuple[str, bytes | None]], base: Sequence[Entry] = ()
) -> list[Entry]:
    """An upper layer from (path, content) changes, with OCI whiteouts.

    `(path, bytes)` adds a file (`dir/` adds a directory); `(path, None)` deletes path with a
    `.wh.<name>` file; `(dir/, None)` makes dir opaque with `dir/.wh..wh..opq`. Parent
    directories are added with their mode from `base` (0755 if new).
    """
    modes = {e.path: e.mode for e in base if e.kind == "dir"}
    out: dict[str, Entry] = {}
    for raw, content in changes:
        path = raw.strip("/")
        parent, _, name = path.rpartition("/")
        if raw.endswith("/"):
            entry = Entry(path, "dir", modes.get(path, 0o755))
            if content is None:
                entry = Entry(f"{path}/{OPAQUE}", "file", 0o644)
        elif content is None:
            entry = Entry(f"{parent}/.wh.{name}".lstrip("/"), "file", 0o644)
        else:
            entry = Entry(path, "file", 0o644, content)
        out[entry.path] = entry
    for path in list(out):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            out.setdefault(d, Entry(d, "dir", modes.get(d, 0o755)))
    return sorted(out.values())


def _tarinfo(name: str, kind: str, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}.get(kind, tarfile.REGTYPE)
    info.mode, info.size, info.linkname = mode, size, link
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def layer_tar(entries: Iterable[Entry]) -> bytes:
    """The uncompressed layer tar of entries, members in sorted order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in sorted(entries):
            if e.kind == "symlink":
                tar.addfile(_tarinfo(e.path, e.kind, e.mode, link=e.data.decode()))
            else:
                info = _tarinfo(e.path, e.kind, e.mode, len(e.data) if e.kind == "file" else 0)
                tar.addfile(info, io.BytesIO(e.data) if e.kind == "file" else None)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _put_blob(layout: Path, data: bytes, media_type: str) -> dict[str, Any]:
    digest = sha256(data)
    (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def split_ref(ref: str) -> tuple[str, str]:
    """`docker.io/library/busybox:latest` -> (`docker.io/library/busybox`, `latest`)."""
    name, sep, tag = ref.rpartition(":")
    return (name, tag) if sep and "/" not in tag else (ref, "latest")


def host_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def build_image_layout(
    dest: Path,
    ref: str = DEFAULT_REF,
    extra_layers: Sequence[Sequence[tuple[str, bytes | None]]] = (),
) -> ImageInfo:
    """Write an OCI image-layout directory: the busybox layer plus any `extra_layers`."""
    (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    base = rootfs_entries()
    layers = [base] + [layer_entries(changes, base) for changes in extra_layers]
    descriptors, diff_ids = [], []
    for entries in layers:
        raw = layer_tar(entries)
        diff_ids.append(sha256(raw))
        descriptors.append(_put_blob(dest, gzip.compress(raw, 6, mtime=0), MT_LAYER))
    history = [{"created": EPOCH, "created_by": "stacklab.testimage: busybox rootfs"}]
    history += [
        {"created": EPOCH, "created_by": f"stacklab.testimage: extra layer {i + 1}"}
        for i in range(len(extra_layers))
    ]
    config = {
        "architecture": host_arch(),
        "os": "linux",
        "created": EPOCH,
        "config": {"Env": [PATH_ENV], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    config_desc = _put_blob(dest, canonical_json(config), MT_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": config_desc,
        "layers": descriptors,
    }
    manifest_desc = _put_blob(dest, canonical_json(manifest), MT_MANIFEST)
    manifest_desc["annotations"] = {
        "io.containerd.image.name": ref,
        "org.opencontainers.image.ref.name": split_ref(ref)[1],
    }
    manifest_desc["platform"] = {"architecture": host_arch(), "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [manifest_desc]}
    (dest / "index.json").write_bytes(canonical_json(index))
    (dest / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    return ImageInfo(
        layout=dest,
        ref=ref,
        manifest_digest=manifest_desc["digest"],
        manifest_size=manifest_desc["size"],
        config_digest=config_desc["digest"],
        layer_digests=[d["digest"] for d in descriptors],
        diff_ids=diff_ids,
    )


def _write_tar(out_tar: Path, members: dict[str, bytes | None]) -> None:
    """A tar of name -> content (None for a directory), sorted, owner 0:0, mtime 0."""
    with tarfile.open(out_tar, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            data = members[name]
            if data is None:
                tar.addfile(_tarinfo(name, "dir", 0o755))
            else:
                tar.addfile(_tarinfo(name, "file", 0o644, len(data)), io.BytesIO(data))


def write_oci_archive(layout: Path, out_tar: Path) -> None:
    """The layout as one tar, the format `ctr images import` and `docker load` (25+) read."""
    members: dict[str, bytes | None] = {}
    for path in layout.rglob("*"):
        name = path.relative_to(layout).as_posix()
        members[name] = None if path.is_dir() else path.read_bytes()
    _write_tar(out_tar, members)


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def docker_name(ref: str) -> str:
    """The short name `docker images` shows: `docker.io/library/busybox:x` -> `busybox:x`."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            return ref.removeprefix(prefix)
    return ref


def write_docker_archive(layout: Path, out_tar: Path, repo_tags: list[str] | None = None) -> None:
    """A `docker save`-style tar: manifest.json, repositories, the config and one layer.tar each."""
    desc = json.loads((layout / "index.json").read_bytes())["manifests"][0]
    if repo_tags is None:
        ref = desc.get("annotations", {}).get("io.containerd.image.name")
        repo_tags = [docker_name(ref)] if ref else []
    manifest = json.loads(_blob(layout, desc["digest"]))
    config_hex = manifest["config"]["digest"].removeprefix("sha256:")
    members: dict[str, bytes | None] = {f"{config_hex}.json": _blob(layout, "sha256:" + config_hex)}
    layer_names = []
    for layer in manifest["layers"]:
        raw = gzip.decompress(_blob(layout, layer["digest"]))
        layer_id = hashlib.sha256(raw).hexdigest()
        members[layer_id] = None
        members[f"{layer_id}/layer.tar"] = raw
        layer_names.append(f"{layer_id}/layer.tar")
    entry = {"Config": f"{config_hex}.json", "RepoTags": repo_tags, "Layers": layer_names}
    members["manifest.json"] = canonical_json([entry])
    repositories: dict[str, dict[str, str]] = {}
    for tag in repo_tags:
        name, version = split_ref(tag)
        repositories.setdefault(name, {})[version] = layer_names[-1].split("/")[0]
    members["repositories"] = canonical_json(repositories)
    _write_tar(out_tar, members)


def build_bundle(dest: Path, args: list[str] | None = None, terminal: bool = False) -> Path:
    """An OCI runtime bundle: `dest/rootfs` (busybox) and `dest/config.json` (runc's default)."""
    from runc_py.spec import default_spec

    build_rootfs(dest / "rootfs")
    spec = default_spec(terminal=terminal, args=args)
    (dest / "config.json").write_text(json.dumps(spec, indent=2) + "\n")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stacklab.testimage", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("layout", help="write an OCI image-layout directory")
    p.add_argument("dir", type=Path)
    p.add_argument("--ref", default=DEFAULT_REF)
    p = sub.add_parser("bundle", help="write an OCI runtime bundle (rootfs + config.json)")
    p.add_argument("dir", type=Path)
    p.add_argument("--terminal", action="store_true")
    p.add_argument("args", nargs="*", help="process args after --, default: sh")
    for kind in ("oci-archive", "docker-archive"):
        p = sub.add_parser(kind, help=f"write the image as an {kind} tar")
        p.add_argument("file", type=Path)
        p.add_argument("--ref", default=DEFAULT_REF)
    ns = parser.parse_args(argv)

    if ns.command == "layout":
        info = build_image_layout(ns.dir, ns.ref)
        print(f"wrote OCI layout {ns.dir} ({info.ref}, manifest {info.manifest_digest})")
    elif ns.command == "bundle":
        build_bundle(ns.dir, ns.args or None, ns.terminal)
        print(f"wrote bundle {ns.dir} (rootfs/, config.json)")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            info = build_image_layout(Path(tmp), ns.ref)
            if ns.command == "oci-archive":
                write_oci_archive(Path(tmp), ns.file)
            else:
                write_docker_archive(Path(tmp), ns.file)
        print(f"wrote {ns.command} {ns.file} ({info.ref}, manifest {info.manifest_digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
