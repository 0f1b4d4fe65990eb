"""Labels: containerd's update rule and its size limit, shared by every store."""

from collections.abc import Mapping, Sequence

from containerd_py.errdefs import InvalidArgument

MAX_LABEL_SIZE = 4096  # key + value, as containerd's labels.Validate


def validate(labels: Mapping[str, str]) -> None:
    for key, value in labels.items():
        if len(key) + len(value) > MAX_LABEL_SIZE:
            raise InvalidArgument(
                f"label key and value greater than maximum size ({MAX_LABEL_SIZE} bytes), "
                f"key: {key[:10]}"
            )


def apply_label_paths(
    current: Mapping[str, str],
    labels: Mapping[str, str],
    fieldpaths: Sequence[str],
    kind: str,
) -> dict[str, str]:
    """containerd's update rule for labels: no fieldpaths replaces them all, and so does
    `labels`; `labels.KEY` sets one key, or removes it when `labels` lacks it."""
    validate(labels)
    if not fieldpaths:
        return dict(labels)
    result = dict(current)
    for path in fieldpaths:
        if path == "labels":
            result = dict(labels)
        elif path.startswith("labels."):
            key = path[len("labels.") :]
            if key in labels:
                result[key] = labels[key]
            else:
                result.pop(key, None)
        else:
            raise InvalidArgument(f'cannot update "{path}" field on {kind}')
    return result
