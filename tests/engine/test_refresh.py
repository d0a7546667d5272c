"""Security fixes reach images by themselves. When an archive publishes a newer version of a package
an image holds: `lambda-images outdated` names the built image, the package and both versions and
fails; `outdated --registry` says the same of the published one; `lambda-images refresh` (what the
schedule runs) rebuilds and republishes exactly that runtime — the archive's new state is a new
base, so no --no-cache is needed — and a second published runtime is left as it was; after that
everything is current, and the next build of the runtime is skipped.

The newer version comes from a local apt repository (tests/apt_repo.py) that the test publishes
into; Debian's own archives are read through a mirror frozen as the test first saw them, so the
test reads nothing but what it published itself, however Debian's archives move meanwhile.
provided.debian12 installs the probe package; go.debian12 (x86_64 only) does not, and is only
there to stay untouched. Archive URLs and the probe package are the same from run to run, so a
warm machine finds the bases this test made before.

provided.debian12 is built for x86_64 alone, except with ``--full`` (the daily suite), which adds
arm64: every archive state is a new Debian base, so the arm64 half makes two bases of its own
under qemu (most of the test's time on a new machine), and refresh rebuilds and publishes each
architecture through the same code.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apt_repo import (
    OUTDATED_EXIT,
    PROBE,
    REPO,
    dpkg_query,
    frozen_debian,
    make_deb,
    probe_matrix,
    publish_repo,
    serve_archive,
)
from cli_runner import lambda_images
from publish_helpers import git_head

pytestmark = [pytest.mark.engine, pytest.mark.slow]

RELEASE = 1767225600  # 2026-01-01 00:00 UTC: the first release's hour (a faked clock)
CHANGED = "provided.debian12"
OTHER = "go.debian12"
UPGRADE = {"package": PROBE, "installed": "1.0", "available": "1.1", "suite": "./"}
# Fixed ports (any free one when taken): the archives' URLs are part of the bases' identity.
ARCHIVE_PORT, DEBIAN_PORT = 38561, 38562


def x86_64_only(text: str, runtime_id: str) -> str:
    """The matrix text with ``runtime_id`` declared for x86_64 only."""
    start = text.index(f"  - id: {runtime_id}\n")
    at = text.index("architectures: [x86_64, arm64]", start)
    return (
        text[:at] + "architectures: [x86_64]" + text[at + len("architectures: [x86_64, arm64]") :]
    )


def published_status(server: Any, repo: str, tag: str) -> str:
    """The dpkg status file of a published image, read straight off the registry: the
    top-most layer that holds it."""
    accept = "application/vnd.oci.image.manifest.v1+json"
    manifest = server.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": accept}).json()
    for layer in reversed(manifest["layers"]):
        blob = server.get(f"/v2/{repo}/blobs/{layer['digest']}").content
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
            for member in tar:
                if member.name.removeprefix("./") == "var/lib/dpkg/status":
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    return extracted.read().decode()
    return ""


def probe_version(status: str) -> str | None:
    found = re.search(rf"^Package: {PROBE}\n(?:.+\n)*?Version: (\S+)$", status, re.MULTILINE)
    return found[1] if found else None


@pytest.fixture
def arches(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The architectures the changed runtime is built for in this run (see above)."""
    return ("x86_64", "arm64") if request.config.getoption("--full") else ("x86_64",)


@pytest.fixture
def archives(engine: Any, tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    """(the local repository's folder, its URL, the frozen Debian mirror's URL)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    with (
        serve_archive(engine, repo, ARCHIVE_PORT) as local,
        frozen_debian(engine, DEBIAN_PORT) as debian,
    ):
        yield repo, local, debian


def test_a_newer_package_is_reported_rebuilt_and_republished_for_that_runtime_alone(
    archives: tuple[Path, str, str],
    arches: tuple[str, ...],
    engine: Any,
    registry_server: Any,
    git_remote: str,
    tmp_path: Path,
    cleanup_images: list[str],
) -> None:
    repo_dir, local, debian = archives
    text = probe_matrix((REPO / "runtimes.yaml").read_text(), local, debian, CHANGED)
    matrix = tmp_path / "runtimes.yaml"
    if arches == ("x86_64",):
        text = x86_64_only(text, CHANGED)
    matrix.write_text(x86_64_only(text, OTHER))
    shutil.copy(REPO / "runtimes.lock.json", tmp_path / "runtimes.lock.json")
    namespace = f"refresh{secrets.token_hex(4)}"
    cleanup_images += [
        *(f"{namespace}/{CHANGED}:{arch}" for arch in arches),
        f"{namespace}/{OTHER}:x86_64",
        *(f"{namespace}/base-debian12:{arch}" for arch in arches),
    ]
    registry = f"{registry_server.host}/{namespace}"
    env = {
        **os.environ,
        "LAMBDA_IMAGES_NAMESPACE": namespace,
        "LAMBDA_IMAGES_REGISTRY_USER": registry_server.username,
        "LAMBDA_IMAGES_REGISTRY_PASSWORD": registry_server.password,
        "LAMBDA_IMAGES_RELEASE_TIME": str(RELEASE),
    }
    common = ["--matrix", str(matrix), "--work", str(tmp_path / "work")]
    both = [CHANGED, OTHER]
    built_here = ["outdated", CHANGED, "--arch", "x86_64", "--only", "images"]  # in the engine
    published = ["outdated", *both, "--only", "images", "--registry", registry]
    all_current = [*(f"{CHANGED}/{a}\tcurrent" for a in arches), f"{OTHER}/x86_64\tcurrent"]
    behind_lines = [f"{CHANGED}/{a}\toutdated: 1 package(s) with a newer version" for a in arches]
    upgrade_line = f"  {PROBE}\t1.0 → 1.1\t(./)"

    def run(*args: str, code: int = 0, **extra: str) -> str:
        result = lambda_images(*common, *args, env={**env, **extra})
        assert result.returncode == code, result.stderr[-3000:]
        return result.stdout

    # The first release: both runtimes built, the probe at 1.0, current, published.
    make_deb(repo_dir, "1.0", tmp_path)
    publish_repo(repo_dir)
    run("build", *both)
    assert dpkg_query(engine, f"{namespace}/{CHANGED}:x86_64")[PROBE] == "1.0"
    assert run(*built_here).splitlines() == [f"{CHANGED}/x86_64\tcurrent"]
    run("snapshot", *both)
    run("publish", *both, "--registry", registry, "--git-remote", git_remote)
    changed_repo, other_repo = f"{namespace}/provided", f"{namespace}/go"
    for arch in arches:
        status = published_status(registry_server, changed_repo, f"debian12-{arch}")
        assert probe_version(status) == "1.0"
    assert run(*published).splitlines() == all_current
    other_tags = {
        t: registry_server.tag_digest(other_repo, t) for t in ("debian12", "debian12-x86_64")
    }
    other_branch = git_head(git_remote, OTHER)
    changed_before = {a: registry_server.tag_digest(changed_repo, f"debian12-{a}") for a in arches}

    # The archive publishes 1.1: the built image and the published ones are behind, and
    # outdated says so, in lines and as JSON.
    make_deb(repo_dir, "1.1", tmp_path)
    publish_repo(repo_dir)
    behind = lambda_images(*common, *built_here, env=env)
    assert behind.returncode == OUTDATED_EXIT, behind.stderr
    assert behind.stdout.splitlines() == [
        f"{CHANGED}/x86_64\toutdated: 1 package(s) with a newer version",
        f"  {PROBE}\t1.0 → 1.1\t(./)",
    ]
    assert (
        behind.stderr.strip()
        .splitlines()[-1]
        .endswith(f"newer packages in the archives for {CHANGED}/x86_64; rebuild them")
    )
    (report,) = json.loads(run(*built_here, "--json", code=OUTDATED_EXIT))["images"]
    assert report["upgrades"] == [UPGRADE]
    assert run(*published, code=OUTDATED_EXIT).splitlines() == [
        *(line for behind_line in behind_lines for line in (behind_line, upgrade_line)),
        f"{OTHER}/x86_64\tcurrent",
    ]
    *changed, other = json.loads(run(*published, "--json", code=OUTDATED_EXIT))["images"]
    for arch, image in zip(arches, changed, strict=True):
        assert image["image"] == f"{registry}/provided:debian12-{arch}"
        assert image["digest"] == changed_before[arch]
        assert image["upgrades"] == [UPGRADE]
    assert other["state"] == "current"

    # The scheduled run, an hour later: only the runtime that was behind is rebuilt.
    refresh_report = tmp_path / "refresh.json"
    later = str(RELEASE + 3600)
    refresh = ["refresh", *both, "--registry", registry, "--git-remote", git_remote]
    out = run(*refresh, "--report", str(refresh_report), LAMBDA_IMAGES_RELEASE_TIME=later)
    assert out.splitlines()[: 1 + len(arches)] == [
        f"{CHANGED}\trebuilt",
        *(f"  {arch}\t{PROBE}\t1.0 → 1.1\t(./)" for arch in arches),
    ]
    summary = json.loads(refresh_report.read_text())
    assert summary["ok"] is True
    assert summary["rebuilt"] == {CHANGED: {arch: [UPGRADE] for arch in arches}}
    assert summary["publish"]["published"] == [CHANGED]
    assert [r["runtime"] for r in summary["publish"]["runtimes"]] == [CHANGED]
    assert summary["publish"]["runtimes"][0]["release"] == "2026.01.01.01"

    # The new images hold 1.1, in the engine and as published; the other did not move.
    for arch in arches:
        assert dpkg_query(engine, f"{namespace}/{CHANGED}:{arch}")[PROBE] == "1.1"
        status = published_status(registry_server, changed_repo, f"debian12-{arch}")
        assert probe_version(status) == "1.1"
        assert registry_server.tag_digest(changed_repo, f"debian12-{arch}") != changed_before[arch]
        assert registry_server.tag_digest(changed_repo, f"debian12.2026.01.01.01-{arch}")
    assert {t: registry_server.tag_digest(other_repo, t) for t in other_tags} == other_tags
    assert git_head(git_remote, OTHER) == other_branch
    assert run(*published).splitlines() == all_current
    assert run(*built_here).splitlines() == [f"{CHANGED}/x86_64\tcurrent"]

    # What moved is written where users read it: the report, and the branch's commit message.
    upgraded = {f"deb:debian/{PROBE}": {"from": "1.0", "to": "1.1"}}
    for arch in arches:
        changes = summary["publish"]["runtimes"][0]["changes"][arch]
        assert changes["upgraded"] == upgraded
        assert changes["added"] == changes["removed"] == {}
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "--quiet", "-b", CHANGED, git_remote, str(clone)],
        check=True, env={**os.environ, "GIT_LFS_SKIP_SMUDGE": "1"},
    )  # fmt: skip
    message = subprocess.run(
        ["git", "-C", str(clone), "log", "-1", "--format=%B"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert message.count(f"~ deb:debian/{PROBE} 1.0 → 1.1") == len(arches), message

    # Nothing moved since: the same archive state gives the same base, so the next build of
    # the runtime is skipped, and the next scheduled run rebuilds and publishes nothing.
    (cell,) = json.loads(run("build", CHANGED, "--arch", "x86_64", "--json"))
    assert cell["state"] == "skipped"
    again = run(*refresh, LAMBDA_IMAGES_RELEASE_TIME=str(RELEASE + 7200))
    assert again.splitlines() == ["every published image is current: nothing to rebuild"]
    assert registry_server.tag_digest(changed_repo, "debian12.2026.01.01.02") is None
