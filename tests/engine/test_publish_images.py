"""Publishing an image the pipeline built (provided.debian12, both architectures) to a real
registry and a bare git remote with LFS, then reading it back with skopeo, git and docker."""

from __future__ import annotations

import hashlib
import json
import lzma
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from image_tree import file_tree
from publish_helpers import (
    LFS_CLONE,
    bare_remote,
    credentials,
    git_head,
    publish_at,
)
from servers import FaultProxy

from pipeline.matrix import Matrix
from pipeline.publish.report import PublishReport
from pipeline.workdir import WorkDir

RT = "provided.debian12"
pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.cells(RT)]
NAMESPACE = "lambda"
RELEASE = 1796029200  # 2026-11-30 09:00 UTC: the release time, faked
# A later run_again takes the clock's time: the same content keeps this release's dated tags.
LABELS = {
    "org.opencontainers.image.source": "https://example.invalid/lambda-base-images",
    "org.opencontainers.image.revision": "89abcdef0123456789abcdef0123456789abcdef",
}


@dataclass
class Published:
    report: PublishReport
    proxy: FaultProxy
    remote: str
    clone: Path
    work: Path
    server: Any

    def run_again(self, matrix: Matrix) -> PublishReport:
        return publish_at(
            matrix, [RT], work=self.work, registry=f"{self.proxy.host}/{NAMESPACE}",
            credentials=credentials(self.server), git_remote=self.remote, labels=LABELS,
        )  # fmt: skip


@pytest.fixture(scope="module")
def published(
    built: Any,
    engine: Any,
    matrix: Matrix,
    work: Path,
    registry_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Published]:
    built(RT)  # the build phase's images and snapshots, published from its work folder
    scratch = tmp_path_factory.mktemp("published")
    remote = bare_remote(scratch)
    proxy = FaultProxy(registry_server.host)  # no faults: it counts what reaches the registry
    report = publish_at(
        matrix, [RT], work=work, registry=f"{proxy.host}/{NAMESPACE}",
        credentials=credentials(registry_server), git_remote=remote, labels=LABELS,
        release=RELEASE,
    )  # fmt: skip
    assert report.ok, report.as_json()["failed"]
    clone = scratch / "clone"
    subprocess.run(["git", *LFS_CLONE, "clone", "-q", "-b", RT, remote, str(clone)], check=True)
    yield Published(report, proxy, remote, clone, work, registry_server)
    proxy.close()


def skopeo_raw(server: Any, reference: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            "skopeo", "inspect", "--raw", "--tls-verify=false",
            "--creds", f"{server.username}:{server.password}",
            f"docker://{server.host}/{NAMESPACE}/provided:{reference}",
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result: dict[str, Any] = json.loads(out)
    return result


def branch_diff_ids(folder: Path, dockerfile: str) -> list[str]:
    """sha256 of each uncompressed branch tarball, in the Dockerfile's ADD order."""
    files = re.findall(r"^ADD (\S+) /$", (folder / dockerfile).read_text(), re.MULTILINE)
    out = []
    for name in files:
        digest = hashlib.sha256()
        with lzma.open(folder / name) as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        out.append("sha256:" + digest.hexdigest())
    return out


def test_every_tag_index_and_diff_id(published: Published) -> None:
    server, rt = published.server, published.report.runtimes[0]
    assert set(rt.tags) == {
        "debian12-x86_64",
        "debian12-arm64",
        "debian12.2026.11.30.09-x86_64",
        "debian12.2026.11.30.09-arm64",
        "debian12",
        "debian12.2026.11.30.09",
    }  # fmt: skip  (provided's `latest` is provided.al2023, as runtimes.yaml declares)
    for tag in rt.tags:
        raw = skopeo_raw(server, tag)
        assert raw["schemaVersion"] == 2
        assert (
            "sha256:"
            + hashlib.sha256(
                json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
            ).hexdigest()
            == rt.tags[tag]
        )
    index = skopeo_raw(server, "debian12")
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
    assert platforms == {"amd64": rt.manifests["x86_64"], "arm64": rt.manifests["arm64"]}
    for arch, docker_arch in (("x86_64", "amd64"), ("arm64", "arm64")):
        manifest = skopeo_raw(server, f"debian12-{arch}")
        assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        config = server.get(f"/v2/{NAMESPACE}/provided/blobs/{manifest['config']['digest']}").json()
        assert config["architecture"] == docker_arch
        expected = branch_diff_ids(published.clone / arch, f"Dockerfile.{RT}")
        assert config["rootfs"]["diff_ids"] == expected
        assert len(manifest["layers"]) == len(expected)
        labels = config["config"]["Labels"]
        for key in ("source", "revision", "created", "version"):
            assert labels[f"org.opencontainers.image.{key}"], key
        assert labels["org.opencontainers.image.version"] == "debian12"
    # The root Dockerfile is the x86_64 image.
    assert branch_diff_ids(published.clone, f"Dockerfile.{RT}") == branch_diff_ids(
        published.clone / "x86_64", f"Dockerfile.{RT}"
    )


def test_republish_is_idempotent(published: Published, matrix: Matrix) -> None:
    proxy = published.proxy
    bytes_before, manifests_before = proxy.upload_bytes, len(proxy.manifest_puts)
    head = git_head(published.remote, RT)
    again = published.run_again(matrix)
    assert again.ok
    rt = again.runtimes[0]
    assert rt.status == "unchanged"
    assert rt.tags == published.report.runtimes[0].tags
    assert proxy.upload_bytes == bytes_before  # counted at the proxy, in front of the registry
    assert len(proxy.manifest_puts) == manifests_before  # no tag rewritten
    assert rt.branch == {"commit": head, "previous": head, "pushed": False}
    assert git_head(published.remote, RT) == head

    # Recompressing every layer from the branch tarballs gives the same blobs and digests.
    shutil.rmtree(WorkDir(published.work).registry_blobs)
    third = published.run_again(matrix)
    assert third.runtimes[0].tags == rt.tags and third.runtimes[0].status == "unchanged"
    assert proxy.upload_bytes == bytes_before


def test_branch_rebuilds_the_published_image(
    published: Published, engine: Any, tmp_path: Path, cleanup_images: list[str]
) -> None:
    server = published.server
    rebuilt = "publish-test/rebuilt-from-branch:x86_64"
    cleanup_images.append(rebuilt)
    stream = engine.api.build(
        path=str(published.clone), dockerfile=f"Dockerfile.{RT}", tag=rebuilt, rm=True,
        forcerm=True, decode=True,
    )  # fmt: skip
    for chunk in stream:
        assert "error" not in chunk, chunk
    repository = f"{server.host}/{NAMESPACE}/provided"
    engine.images.pull(
        repository, tag="debian12-x86_64",
        auth_config={"username": server.username, "password": server.password},
    )  # fmt: skip
    pulled = f"{repository}:debian12-x86_64"
    cleanup_images.append(pulled)
    a, b = engine.images.get(rebuilt).attrs, engine.images.get(pulled).attrs
    assert a["Architecture"] == b["Architecture"] == "amd64"
    for key in ("Env", "Entrypoint", "Cmd", "WorkingDir", "User", "Labels"):
        assert a["Config"].get(key) == b["Config"].get(key), key
    assert file_tree(engine, rebuilt) == file_tree(engine, pulled)
