"""A built runtime (python3.11.debian12, both architectures) published with its SBOMs: found
from the published manifests the way `oras discover` finds them (the registry here has no
referrers API, so through the referrers tag, read with skopeo and plain HTTP), listing the
image's OS packages and its runtime interface client, carried by the branch; a second release
after a change lists the upgrade in the branch's commit message and README and in the report."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO
from publish_helpers import bare_remote, credentials, layer_tar, publish_at

from pipeline.matrix import Matrix
from pipeline.publish.report import PublishReport
from pipeline.records import Layer
from pipeline.snapshot import compress_xz, require_snapshot
from pipeline.workdir import WorkDir

RT = "python3.11.debian12"
pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.cells(RT)]
NAMESPACE = "sbom"
REPOSITORY = f"{NAMESPACE}/python"
TAG = "3.11-debian12"
ARCHES = ("x86_64", "arm64")
NINE = 1796029200  # 2026-11-30 09:00 UTC, faked
TEN = NINE + 3600
CYCLONEDX = "application/vnd.cyclonedx+json"


@dataclass
class Published:
    work: Path
    remote: str
    scratch: Path
    server: Any
    first: PublishReport


def runtime_row() -> dict[str, Any]:
    rows = yaml.safe_load((REPO / "runtimes.yaml").read_text())["runtimes"]
    row: dict[str, Any] = next(r for r in rows if r["id"] == RT)
    return row


def pinned(row: dict[str, Any], name: str) -> str:
    return next(p.split("==")[1] for p in row["install"]["pip"] if p.startswith(f"{name}=="))


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
    scratch = tmp_path_factory.mktemp("sbom")
    remote = bare_remote(scratch)
    first = publish_at(
        matrix, [RT], work=work, registry=f"{registry_server.host}/{NAMESPACE}",
        credentials=credentials(registry_server), git_remote=remote, release=NINE,
    )  # fmt: skip
    assert first.ok, first.as_json()["failed"]
    yield Published(work, remote, scratch, registry_server, first)


# --- discovery, as a client that knows only the manifest's digest does it ---------------------


def skopeo_raw(server: Any, reference: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            "skopeo", "inspect", "--raw", "--tls-verify=false",
            "--creds", f"{server.username}:{server.password}",
            f"docker://{server.host}/{REPOSITORY}:{reference}",
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result: dict[str, Any] = json.loads(out)
    return result


def discover_sbom(server: Any, manifest_digest: str) -> tuple[dict[str, Any], bytes]:
    """(artifact manifest, SBOM bytes) attached to ``manifest_digest``: the referrers API
    first; where the registry has none, the referrers tag ``sha256-<hex>``."""
    api = server.get(f"/v2/{REPOSITORY}/referrers/{manifest_digest}")
    if api.status_code == 200:
        listed = api.json()["manifests"]
    else:
        listed = skopeo_raw(server, manifest_digest.replace(":", "-"))["manifests"]
    found = [m for m in listed if m.get("artifactType") == CYCLONEDX]
    assert len(found) == 1, listed
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    artifact = server.get(f"/v2/{REPOSITORY}/manifests/{found[0]['digest']}", headers=accept).json()
    assert artifact["subject"]["digest"] == manifest_digest
    assert artifact["artifactType"] == CYCLONEDX
    assert artifact["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
        "size": 2,
    }
    (layer,) = artifact["layers"]
    assert layer["mediaType"] == CYCLONEDX
    blob = server.get(f"/v2/{REPOSITORY}/blobs/{layer['digest']}").content
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
    return artifact, blob


def dpkg_installed(work: Path, arch: str) -> set[tuple[str, str]]:
    """(package, version) installed per the dpkg status of the snapshot's topmost layer that
    has one, read with tar and xz as a user would."""
    cell = WorkDir(work).cell(RT, arch)
    snap = require_snapshot(cell)
    for layer in reversed(snap.layers):
        proc = subprocess.run(
            ["tar", "-xJOf", str(cell.layers / layer.file), "var/lib/dpkg/status"],
            capture_output=True,
            check=False,
        )
        if proc.returncode == 0:
            break
    else:
        raise AssertionError("no dpkg status in the snapshot")
    found = set()
    for paragraph in proc.stdout.decode().split("\n\n"):
        fields = dict(
            line.split(": ", 1)
            for line in paragraph.splitlines()
            if ": " in line and line[0] != " "
        )
        if fields.get("Status", "").endswith(" installed"):
            found.add((fields["Package"], fields["Version"]))
    return found


def deb_components(sbom: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (c["name"], c["version"])
        for c in sbom["components"]
        if c.get("purl", "").startswith("pkg:deb/debian/")
    }


def branch_clone(remote: str, dest: Path) -> Path:
    env = {**os.environ, "GIT_LFS_SKIP_SMUDGE": "1"}
    shutil.rmtree(dest, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", "-b", RT, remote, str(dest)], check=True, env=env)
    return dest


def commit_message(clone: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(clone), "log", "-1", "--format=%B"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_each_manifest_has_its_sbom_with_os_packages_and_the_ric(published: Published) -> None:
    report = published.first.runtimes[0]
    row = runtime_row()
    ric = pinned(row, "awslambdaric")
    clone = branch_clone(published.remote, published.scratch / "clone1")
    for arch in ARCHES:
        manifest = report.tags[f"{TAG}-{arch}"]
        artifact, blob = discover_sbom(published.server, manifest)
        sbom = json.loads(blob)
        assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"
        # Every installed OS package, with its version, and nothing else of dpkg's.
        installed = dpkg_installed(published.work, arch)
        assert len(installed) > 50
        assert deb_components(sbom) == installed
        dpkg_arch = {"x86_64": "amd64", "arm64": "arm64"}[arch]
        libc = next(c for c in sbom["components"] if c["name"] == "libc6")
        assert f"?arch={dpkg_arch}&distro=debian-12" in libc["purl"]
        # The runtime interface client, at the version runtimes.yaml pins.
        rics = [c for c in sbom["components"] if c["name"] == "awslambdaric"]
        assert [(c["version"], c["purl"]) for c in rics] == [(ric, f"pkg:pypi/awslambdaric@{ric}")]
        # The emulator, a Go program: its module at the version runtimes.yaml pins.
        rie_version = yaml.safe_load((REPO / "runtimes.yaml").read_text())["inputs"]["rie"][
            "version"
        ]
        rie = [
            c for c in sbom["components"] if c["name"] == "aws-lambda-runtime-interface-emulator"
        ]
        assert [c["version"] for c in rie] == [rie_version]
        # The branch carries the same document beside the architecture's layers.
        assert (clone / arch / "sbom.cdx.json").read_bytes() == blob
        assert (
            report.sboms[arch]
            == "sha256:"
            + hashlib.sha256(
                json.dumps(artifact, sort_keys=True, separators=(",", ":")).encode()
            ).hexdigest()
        )
        assert report.changes[arch]["note"] == "first release"
    readme = (clone / "README.md").read_text()
    assert "`x86_64/sbom.cdx.json`" in readme and "`arm64/sbom.cdx.json`" in readme
    assert "## Change history" in readme and "first release" in readme
    assert "Release 2026.11.30.09: first release." in commit_message(clone)


# --- a second release, after a change ---------------------------------------------------------


def changed_copy(work: Path, dest: Path, ric: str, newer_ric: str) -> tuple[str, str, str]:
    """A copy of the cells with one layer more on top: the runtime interface client replaced by
    a newer one (the old dist-info whited out) and bash upgraded in the dpkg status. Returns
    (package, old, new) of the bash change."""
    bash_old = bash_new = ""
    for arch in ARCHES:
        src, cell = WorkDir(work).cell(RT, arch), WorkDir(dest).cell(RT, arch)
        shutil.copytree(src.folder, cell.folder, copy_function=os.link)
        snap = require_snapshot(cell)
        status = subprocess.run(
            ["tar", "-xJOf", str(src.layers / snap.layers[0].file), "var/lib/dpkg/status"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        for layer in snap.layers[1:]:
            proc = subprocess.run(
                ["tar", "-xJOf", str(src.layers / layer.file), "var/lib/dpkg/status"],
                capture_output=True, check=False,
            )  # fmt: skip
            status = proc.stdout if proc.returncode == 0 else status
        paragraphs = status.decode().split("\n\n")
        for i, p in enumerate(paragraphs):
            if p.startswith("Package: bash\n"):
                bash_old = next(x for x in p.splitlines() if x.startswith("Version: "))[9:]
                bash_new = bash_old + "+local1"
                paragraphs[i] = p.replace(f"Version: {bash_old}", f"Version: {bash_new}")
        metadata = f"Metadata-Version: 2.1\nName: awslambdaric\nVersion: {newer_ric}\n\n"
        raw = layer_tar(
            {
                "var/lib/dpkg/status": "\n\n".join(paragraphs).encode(),
                f"var/runtime/.wh.awslambdaric-{ric}.dist-info": b"",
                f"var/runtime/awslambdaric-{newer_ric}.dist-info/METADATA": metadata.encode(),
            }
        )
        plain = cell.folder / "extra.tar"
        plain.write_bytes(raw)
        sha, size, _ = compress_xz(plain, cell.layers)
        plain.unlink()
        extra = Layer(
            file=f"{sha}.tar.xz",
            sha256=sha,
            diff_id="sha256:" + hashlib.sha256(raw).hexdigest(),
            size=len(raw),
            compressed_size=size,
        )
        dataclasses.replace(snap, layers=[*snap.layers, extra]).write(cell)
    return "deb:debian/bash", bash_old, bash_new


def test_a_second_release_lists_the_upgrades(
    published: Published, matrix: Matrix, tmp_path: Path
) -> None:
    ric = pinned(runtime_row(), "awslambdaric")
    newer = ric + ".post1"
    bash, bash_old, bash_new = changed_copy(published.work, tmp_path / "work", ric, newer)
    second = publish_at(
        matrix, [RT], work=tmp_path / "work", registry=f"{published.server.host}/{NAMESPACE}",
        credentials=credentials(published.server), git_remote=published.remote, release=TEN,
    )  # fmt: skip
    assert second.ok, second.as_json()["failed"]
    report = second.runtimes[0]
    assert report.release == "2026.11.30.10"
    clone = branch_clone(published.remote, tmp_path / "clone2")
    message = commit_message(clone)
    readme = (clone / "README.md").read_text()
    assert "Release 2026.11.30.10, changes since 2026.11.30.09:" in message
    for arch in ARCHES:
        changes = report.changes[arch]
        assert changes["previous"] == "2026.11.30.09"
        assert changes["upgraded"] == {
            "pypi:awslambdaric": {"from": ric, "to": newer},
            bash: {"from": bash_old, "to": bash_new},
        }
        assert changes["added"] == {} and changes["removed"] == {}
        # The new SBOM is on the new manifest; the old one stays on the old.
        _, blob = discover_sbom(published.server, report.tags[f"{TAG}-{arch}"])
        assert f"pkg:pypi/awslambdaric@{newer}" in blob.decode()
        _, old = discover_sbom(published.server, published.first.runtimes[0].manifests[arch])
        assert f"pkg:pypi/awslambdaric@{ric}" in old.decode()
    for text in (message, readme):
        assert f"pypi:awslambdaric {ric} → {newer}" in text
        assert f"{bash} {bash_old} → {bash_new}" in text
    assert readme.count(f"pypi:awslambdaric {ric} → {newer}") == 2  # x86_64 and arm64
    # The same release again changes nothing and says the same.
    again = publish_at(
        matrix, [RT], work=tmp_path / "work", registry=f"{published.server.host}/{NAMESPACE}",
        credentials=credentials(published.server), git_remote=published.remote,
        release=TEN + 7200,
    )  # fmt: skip
    assert again.runtimes[0].status == "unchanged"
    assert again.runtimes[0].changes == report.changes
