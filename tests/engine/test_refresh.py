"""Security fixes reach published images by themselves: when an archive publishes a newer version
of a package a published image holds, `lambda-images outdated --registry` names the runtime, the
package and both versions and fails; `lambda-images refresh` (what the schedule runs) rebuilds
and republishes exactly that runtime, and a second published runtime is left as it was.

Two runtimes are published to a real registry (docker-registry) and a bare git remote:
provided.debian12 on both architectures (arm64 under qemu), whose base installs a probe package
from a local apt repository (tests/apt_repo.py), and provided.debian13, which does not; the
latter is trimmed to x86_64, since it is only there to stay untouched.
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
from pathlib import Path
from typing import Any

import pytest
from apt_repo import (
    OUTDATED_EXIT,
    PROBE,
    REPO,
    cli,
    dpkg_query,
    make_deb,
    publish_repo,
    with_probe_archive,
)
from publish_helpers import git_head

RELEASE = 1767225600  # 2026-01-01 00:00 UTC: the first release's hour (a faked clock)
CHANGED = "provided.debian12"
OTHER = "provided.debian13"
ARCHES = ("x86_64", "arm64")
UPGRADE = {"package": PROBE, "installed": "1.0", "available": "1.1", "suite": "./"}


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


@pytest.mark.engine
@pytest.mark.slow
def test_refresh_rebuilds_and_republishes_only_the_runtime_whose_published_image_is_behind(
    local_archive: tuple[Path, str],
    engine: Any,
    registry_server: Any,
    git_remote: str,
    tmp_path: Path,
    cleanup_images: list[str],
) -> None:
    repo_dir, uri = local_archive
    text = with_probe_archive((REPO / "runtimes.yaml").read_text(), uri)
    matrix = tmp_path / "runtimes.yaml"
    matrix.write_text(x86_64_only(text, OTHER))
    shutil.copy(REPO / "runtimes.lock.json", tmp_path / "runtimes.lock.json")
    namespace = f"refresh{secrets.token_hex(4)}"
    cleanup_images += [
        f"{namespace}/{CHANGED}:x86_64",
        f"{namespace}/{CHANGED}:arm64",
        f"{namespace}/{OTHER}:x86_64",
        f"{namespace}/base-debian12:x86_64",
        f"{namespace}/base-debian12:arm64",
        f"{namespace}/base-debian13:x86_64",
    ]
    registry = f"{registry_server.host}/{namespace}"
    env = {
        **os.environ,
        "LAMBDA_IMAGES_NAMESPACE": namespace,
        # Roots made from this test's archive stay out of the shared cache.
        "LAMBDA_IMAGES_CACHE": str(tmp_path / "cache"),
        "LAMBDA_IMAGES_REGISTRY_USER": registry_server.username,
        "LAMBDA_IMAGES_REGISTRY_PASSWORD": registry_server.password,
        "LAMBDA_IMAGES_RELEASE_TIME": str(RELEASE),
    }
    common = ["--matrix", str(matrix), "--work", str(tmp_path / "work")]
    both = [CHANGED, OTHER]

    def run(*args: str, code: int = 0, **extra: str) -> str:
        result = cli(*common, *args, env={**env, **extra})
        assert result.returncode == code, result.stderr[-3000:]
        return result.stdout

    # The first release: both runtimes built with the probe at 1.0, published.
    make_deb(repo_dir, "1.0", tmp_path)
    publish_repo(repo_dir)
    run("build", *both)
    run("snapshot", *both)
    run("publish", *both, "--registry", registry, "--git-remote", git_remote)
    repo = f"{namespace}/provided"
    for arch in ARCHES:
        assert probe_version(published_status(registry_server, repo, f"debian12-{arch}")) == "1.0"
    assert run("outdated", *both, "--registry", registry).splitlines() == [
        f"{CHANGED}/x86_64\tcurrent",
        f"{CHANGED}/arm64\tcurrent",
        f"{OTHER}/x86_64\tcurrent",
    ]
    other_tags = {t: registry_server.tag_digest(repo, t) for t in ("debian13", "debian13-x86_64")}
    other_branch = git_head(git_remote, OTHER)
    changed_before = {a: registry_server.tag_digest(repo, f"debian12-{a}") for a in ARCHES}

    # The archive publishes 1.1: the published image is behind, and outdated says so.
    make_deb(repo_dir, "1.1", tmp_path)
    publish_repo(repo_dir)
    behind = run("outdated", *both, "--registry", registry, code=OUTDATED_EXIT)
    assert behind.splitlines() == [
        f"{CHANGED}/x86_64\toutdated: 1 package(s) with a newer version",
        f"  {PROBE}\t1.0 → 1.1\t(./)",
        f"{CHANGED}/arm64\toutdated: 1 package(s) with a newer version",
        f"  {PROBE}\t1.0 → 1.1\t(./)",
        f"{OTHER}/x86_64\tcurrent",
    ]
    *changed, other = json.loads(
        run("outdated", *both, "--registry", registry, "--json", code=OUTDATED_EXIT)
    )
    for arch, image in zip(ARCHES, changed, strict=True):
        assert image["image"] == f"{registry}/provided:debian12-{arch}"
        assert image["digest"] == changed_before[arch]
        assert image["upgrades"] == [UPGRADE]
    assert other["state"] == "current"

    # The scheduled run, an hour later: only the runtime that was behind is rebuilt.
    report = tmp_path / "refresh.json"
    later = str(RELEASE + 3600)
    refresh = ["refresh", *both, "--registry", registry, "--git-remote", git_remote]
    out = run(*refresh, "--report", str(report), LAMBDA_IMAGES_RELEASE_TIME=later)
    assert out.splitlines()[:3] == [
        f"{CHANGED}\trebuilt",
        f"  x86_64\t{PROBE}\t1.0 → 1.1\t(./)",
        f"  arm64\t{PROBE}\t1.0 → 1.1\t(./)",
    ]
    summary = json.loads(report.read_text())
    assert summary["ok"] is True
    assert summary["rebuilt"] == {CHANGED: {"x86_64": [UPGRADE], "arm64": [UPGRADE]}}
    assert summary["publish"]["published"] == [CHANGED]
    assert [r["runtime"] for r in summary["publish"]["runtimes"]] == [CHANGED]
    assert summary["publish"]["runtimes"][0]["release"] == "2026.01.01.01"

    # The new images hold 1.1, in the engine and as published; the other did not move.
    for arch in ARCHES:
        assert dpkg_query(engine, f"{namespace}/{CHANGED}:{arch}")[PROBE] == "1.1"
        assert probe_version(published_status(registry_server, repo, f"debian12-{arch}")) == "1.1"
        assert registry_server.tag_digest(repo, f"debian12-{arch}") != changed_before[arch]
        assert registry_server.tag_digest(repo, f"debian12.2026.01.01.01-{arch}") is not None
    assert {t: registry_server.tag_digest(repo, t) for t in other_tags} == other_tags
    assert git_head(git_remote, OTHER) == other_branch
    assert run("outdated", *both, "--registry", registry).splitlines() == [
        f"{CHANGED}/x86_64\tcurrent",
        f"{CHANGED}/arm64\tcurrent",
        f"{OTHER}/x86_64\tcurrent",
    ]

    # What moved is written where users read it: the report, and the branch's commit message.
    upgraded = {f"deb:debian/{PROBE}": {"from": "1.0", "to": "1.1"}}
    for arch in ARCHES:
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
    assert message.count(f"~ deb:debian/{PROBE} 1.0 → 1.1") == len(ARCHES), message

    # Nothing behind: the next scheduled run rebuilds and publishes nothing.
    again = run(*refresh, LAMBDA_IMAGES_RELEASE_TIME=str(RELEASE + 7200))
    assert again.splitlines() == ["every published image is current: nothing to rebuild"]
    assert registry_server.tag_digest(repo, "debian12.2026.01.01.02") is None
