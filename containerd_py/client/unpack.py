"""Unpack an image's layers into committed snapshots, as containerd's client does: one
snapshot per layer, named by its chain ID, each prepared on its parent, filled by Diff.Apply
and committed; the image's config then holds the top of the chain for the collector
(`containerd.io/gc.ref.snapshot.<snapshotter>`)."""

import hashlib
import json
import os
import time
from collections.abc import Mapping
from typing import Any

from containerd_py.client.client import Client
from containerd_py.client.descriptors import Descriptor, to_proto
from containerd_py.errdefs import AlreadyExists, InvalidArgument, NotFound

UNCOMPRESSED_LABEL = "containerd.io/uncompressed"
TARGET_LABEL = "containerd.io/snapshot.ref"


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The OCI chain IDs: ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " +
    DiffID(Ln))."""
    chain: list[str] = []
    for diff_id in diff_ids:
        if chain:
            text = f"{chain[-1]} {diff_id}".encode()
            chain.append("sha256:" + hashlib.sha256(text).hexdigest())
        else:
            chain.append(diff_id)
    return chain


def read_json(client: Client, digest: str) -> dict[str, Any]:
    try:
        body = json.loads(client.read_blob(digest))
    except ValueError as e:
        raise InvalidArgument(f"{digest}: invalid json: {e}") from None
    if not isinstance(body, dict):
        raise InvalidArgument(f"{digest}: not a json object")
    return body


def unpack(client: Client, manifest: Descriptor, snapshotter: str) -> str:
    """Unpack the image whose manifest is `manifest`; return the top chain ID. The client
    should hold a lease (pull's does), so nothing is collected before the labels are set."""
    body = read_json(client, str(manifest["digest"]))
    config: Mapping[str, Any] = body.get("config") or {}
    layers: list[Mapping[str, Any]] = list(body.get("layers") or [])
    diff_ids = list(
        (read_json(client, str(config["digest"])).get("rootfs") or {}).get("diff_ids") or []
    )
    if len(diff_ids) != len(layers):
        raise InvalidArgument(
            f"mismatched image rootfs and manifest layers: {len(diff_ids)} != {len(layers)}"
        )
    parent = ""
    for layer, diff_id, chain_id in zip(layers, diff_ids, chain_ids(diff_ids), strict=True):
        _apply_layer(client, snapshotter, layer, diff_id, chain_id, parent)
        parent = chain_id
    if parent:
        client.set_content_labels(
            str(config["digest"]), {f"containerd.io/gc.ref.snapshot.{snapshotter}": parent}
        )
    return parent


def _apply_layer(
    client: Client,
    snapshotter: str,
    layer: Descriptor,
    diff_id: str,
    chain_id: str,
    parent: str,
) -> None:
    try:
        client.stat_snapshot(chain_id, snapshotter)
        return  # unpacked before, by this image or another sharing the layer
    except NotFound:
        pass
    key = f"extract-{time.time_ns()}-{os.urandom(4).hex()} {chain_id}"
    try:
        mounts = client.prepare(key, parent, {TARGET_LABEL: chain_id}, snapshotter)
    except AlreadyExists:
        return  # another unpack committed it first
    try:
        applied = client.apply(to_proto(layer), mounts)
        if applied.digest != diff_id:
            raise InvalidArgument(
                f"wrong diff id calculated on extraction {diff_id!r}, got {applied.digest!r}"
            )
        client.commit_snapshot(chain_id, key, snapshotter=snapshotter)
    except BaseException:
        try:
            client.remove_snapshot(key, snapshotter)
        except NotFound:
            pass
        raise
    client.set_content_labels(str(layer["digest"]), {UNCOMPRESSED_LABEL: diff_id})
