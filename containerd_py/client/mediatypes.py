"""The media types of OCI and Docker images (containerd's `images/mediatypes.go` and the OCI
image-spec's `specs-go/v1/mediatype.go`), with the predicates the remotes need."""

# OCI image-spec
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

# Docker image manifest v2, schema 2 (and the legacy schema 1, only to name it)
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
_DOCKER_LAYERS = frozenset(
    {DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_LAYER_FOREIGN, DOCKER_LAYER_FOREIGN_GZIP}
)


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    return media_type in MANIFEST_TYPES


def is_config(media_type: str) -> bool:
    return media_type in CONFIG_TYPES


def is_layer(media_type: str) -> bool:
    """Any OCI layer type (with any +suffix, e.g. +encrypted) or a Docker schema 2 layer."""
    return media_type.startswith("application/vnd.oci.image.layer.") or (
        media_type.split("+")[0] in _DOCKER_LAYERS
    )


def is_manifest_endpoint(media_type: str) -> bool:
    """Served by a registry's `/manifests/` endpoint rather than `/blobs/`."""
    return (
        media_type in INDEX_TYPES
        or media_type in MANIFEST_TYPES
        or (media_type == DOCKER_MANIFEST_SCHEMA1)
    )
