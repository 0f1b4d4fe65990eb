"""Fixtures for the interop tests: a real containerd of the session's own (see containerd.py)."""

from collections.abc import Iterator

import pytest
from containerd import Containerd, missing, start_containerd


@pytest.fixture(scope="session")
def containerd_daemon() -> Iterator[Containerd]:
    """One real containerd for the session, stopped and cleaned up at the end."""
    if reason := missing():
        pytest.skip(reason)
    with start_containerd() as cd:
        yield cd


@pytest.fixture
def containerd(containerd_daemon: Containerd) -> Iterator[Containerd]:
    """The session's containerd, checked after the test: no task, container, runtime state,
    bundle, mount, cgroup, shim or shim socket may be left. The leftovers are then removed, so
    one failed test does not fail the next."""
    yield containerd_daemon
    left = containerd_daemon.leftovers()
    if left:
        containerd_daemon.reset()
    assert not left, "left behind: " + "; ".join(left)
