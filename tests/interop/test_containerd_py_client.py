"""containerd_py.client beyond pull: import of OCI and `docker save` archives, export that the
real `ctr` imports, push that the real `ctr` pulls back, events, and filters — each checked
against containerd-py with the real `ctr` on the other side."""

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from containerd_py_daemon import ContainerdPy, start_containerd_py

from containerd_py.api.services.events.v1 import events_pb2
from containerd_py.client import (
    Client,
    Resolver,
    configure_hosts,
    export_archive,
    import_archive,
    push,
)
from containerd_py.client.unpack import chain_ids
from containerd_py.errdefs import InvalidArgument
from stacklab import testimage

sys.path.insert(0, str(Path(__file__).parent.parent))
import registry as reg

pytestmark = [pytest.mark.root, pytest.mark.interop]

REF = testimage.DEFAULT_REF


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory) -> testimage.ImageInfo:
    return testimage.build_image_layout(tmp_path_factory.mktemp("image") / "layout")


@pytest.fixture(scope="module")
def cdpy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerdPy]:
    with start_containerd_py(tmp_path_factory.mktemp("cdpy")) as cd:
        yield cd


def ok(result: "subprocess.CompletedProcess[str]") -> str:
    assert result.returncode == 0, f"{result.args}: {result.stderr}"
    return result.stdout


def empty(cdpy: ContainerdPy, ns: str) -> None:
    for name in ok(cdpy.ctr("images", "ls", "-q", namespace=ns)).split():
        ok(cdpy.ctr("images", "rm", name, namespace=ns))
    assert ok(cdpy.ctr("content", "ls", "-q", namespace=ns)).strip() == ""


def test_import_oci_and_docker_archives(
    cdpy: ContainerdPy, info: testimage.ImageInfo, tmp_path: Path
) -> None:
    oci, docker = tmp_path / "oci.tar", tmp_path / "docker.tar"
    testimage.write_oci_archive(info.layout, oci)
    testimage.write_docker_archive(info.layout, docker, ["busybox:docker"])
    with cdpy.client("archives") as client:
        (image,) = import_archive(client, str(oci))
        assert (image.name, image.target.digest) == (REF, info.manifest_digest)
        with open(docker, "rb") as f:
            (loaded,) = import_archive(client, f)
        assert loaded.name == "docker.io/library/busybox:docker"
        assert loaded.target.media_type == "application/vnd.docker.distribution.manifest.v2+json"
        # the same layer, unpacked once: both images share the snapshot
        assert client.stat_snapshot(chain_ids(info.diff_ids)[-1]).kind == 3
        with pytest.raises(InvalidArgument, match="not an image archive"):
            import_archive(client, str(info.layout / "oci-layout"))
    check = ok(cdpy.ctr("images", "check", namespace="archives"))
    assert check.count("complete") == 2
    empty(cdpy, "archives")


def test_export_is_what_the_real_ctr_imports(
    cdpy: ContainerdPy, info: testimage.ImageInfo, tmp_path: Path
) -> None:
    oci, exported = tmp_path / "oci.tar", tmp_path / "exported.tar"
    testimage.write_oci_archive(info.layout, oci)
    with cdpy.client("exports") as client:
        import_archive(client, str(oci), unpack_to=None)
        export_archive(client, str(exported), [REF])
    ok(cdpy.ctr("images", "import", str(exported), namespace="exports-back"))
    listed = ok(cdpy.ctr("images", "ls", namespace="exports-back"))
    assert REF in listed and info.manifest_digest in listed
    empty(cdpy, "exports")
    empty(cdpy, "exports-back")


def test_push_then_the_real_ctr_pulls_it(
    cdpy: ContainerdPy, info: testimage.ImageInfo, tmp_path: Path
) -> None:
    if reason := reg.missing():
        pytest.skip(reason)
    oci = tmp_path / "oci.tar"
    testimage.write_oci_archive(info.layout, oci)
    with reg.Registry("plain") as r:
        target = f"{r.host}/team/pushed:v1"
        with (
            cdpy.client("pushes") as client,
            Resolver(hosts=configure_hosts(plain_http=True)) as res,
        ):
            import_archive(client, str(oci), unpack_to=None)
            push(client, target, resolver=res, image=REF)
        ok(cdpy.ctr("images", "pull", "--plain-http", target, namespace="pulled-back"))
        listed = ok(cdpy.ctr("images", "ls", namespace="pulled-back"))
        assert target in listed and info.manifest_digest in listed
    empty(cdpy, "pushes")
    empty(cdpy, "pulled-back")


def test_events_reach_subscribers_and_ctr_events(
    cdpy: ContainerdPy, info: testimage.ImageInfo, tmp_path: Path
) -> None:
    oci = tmp_path / "oci.tar"
    testimage.write_oci_archive(info.layout, oci)
    seen: list[events_pb2.Envelope] = []
    with cdpy.client("events") as client:
        stream = client.subscribe('topic~="/images/"', 'namespace=="events-ns"')
        reader = threading.Thread(target=lambda: seen.extend(stream), daemon=True)
        reader.start()
        log = tmp_path / "ctr-events.log"
        with open(log, "w") as out:
            watcher = subprocess.Popen(
                ["ctr", "-a", str(cdpy.socket), "events"], stdout=out, stderr=subprocess.STDOUT
            )
            time.sleep(0.5)  # both subscribed before anything happens
            try:
                ok(cdpy.ctr("images", "import", str(oci), namespace="events"))
                ok(cdpy.ctr("namespaces", "create", "events-ns"))
                ok(cdpy.ctr("images", "rm", REF, namespace="events"))
                time.sleep(0.5)
            finally:
                watcher.terminate()
                watcher.wait(10)
                stream.cancel()
                reader.join(10)
    topics = [e.topic for e in seen if e.namespace == "events"]
    assert topics[:1] == ["/images/create"] and topics[-1:] == ["/images/delete"]
    assert [e.topic for e in seen if e.namespace == "events-ns"] == ["/namespaces/create"]
    lines = log.read_text().splitlines()
    kinds = [line.split()[5] for line in lines if len(line.split()) > 5]
    for topic in ("/images/create", "/snapshot/prepare", "/snapshot/commit",
                  "/namespaces/create", "/images/delete"):  # fmt: skip
        assert topic in kinds, lines
    create = next(line for line in lines if "/images/create" in line)
    assert json.loads(create.split(" ", 6)[6])["name"] == REF
    bad = cdpy.ctr("events", "topic==", timeout=10)
    assert bad.returncode != 0 and "invalid argument" in bad.stderr


def test_filters_in_containerd_syntax(
    cdpy: ContainerdPy, info: testimage.ImageInfo, tmp_path: Path
) -> None:
    oci = tmp_path / "oci.tar"
    testimage.write_oci_archive(info.layout, oci)
    ns = "filters"
    ok(cdpy.ctr("images", "import", "--no-unpack", str(oci), namespace=ns))
    ok(cdpy.ctr("images", "label", REF, "team=lab", namespace=ns))
    q = lambda *f: ok(cdpy.ctr("images", "ls", "-q", *f, namespace=ns)).split()  # noqa: E731
    assert q("name~=busy") == [REF]
    assert q("name==nope") == []
    assert q("labels.team==lab") == [REF]
    assert q("labels.team!=lab") == []
    assert q(f"target.digest=={info.manifest_digest}") == [REF]
    content = ok(cdpy.ctr("content", "ls", "-q", f"digest=={info.config_digest}", namespace=ns))
    assert content.split() == [info.config_digest]
    bad = cdpy.ctr("images", "ls", "name==", namespace=ns)
    assert bad.returncode != 0 and "invalid argument" in bad.stderr
    empty(cdpy, ns)


def test_client_sees_containerd_errors_as_errdefs(cdpy: ContainerdPy) -> None:
    with Client(str(cdpy.socket), "errors") as client:
        with pytest.raises(Exception, match='image "missing": not found') as e:
            client.get_image("missing")
        assert type(e.value).__name__ == "NotFound"
