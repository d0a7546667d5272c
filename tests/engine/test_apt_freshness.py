"""Security updates reach the images by themselves: a fresh Debian image holds no package with a
newer version in the suite, -updates or -security; an archive that publishes a newer version of
an installed package gives the next build (without --no-cache) that version; and
`lambda-images outdated` names what is behind and fails until then.

The newer version comes from a local apt repository (made with dpkg-deb and apt-ftparchive,
unsigned, ``trusted=yes``) served on the Docker bridge's gateway address, which both the host
(mmdebstrap) and the classic builder's RUN containers reach."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable
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

from pipeline import apt
from pipeline.matrix import AptArchive, Target

BuiltImages = Callable[[str], dict[str, Target]]


def cat(engine: Any, image: str, path: str) -> str:
    output: bytes = engine.containers.run(
        image, entrypoint=["cat"], command=[path], remove=True, network_disabled=True
    )
    return output.decode()


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_a_fresh_debian_image_has_no_package_with_a_newer_version_in_its_archives(
    arch: str, built: BuiltImages, engine: Any, tmp_path: Path
) -> None:
    target = built("provided.debian12")[arch]
    sources = cat(engine, target.image_tag, "/etc/apt/sources.list").split("\n")
    lines = [line for line in sources if line.startswith("deb ")]
    assert lines == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    archives = [
        AptArchive(uri=uri, suite=suite, components=tuple(components))
        for _, uri, suite, *components in (line.split() for line in lines)
    ]
    newest = apt.newest_versions(archives, target.arch.debian, tmp_path / "indices")
    installed = dpkg_query(engine, target.image_tag)
    assert {"libc6", "libssl3", "ca-certificates", "curl"} <= installed.keys()
    # Every installed package is in an archive, at exactly the newest version offered.
    behind = {
        name: (version, newest[name].version)
        for name, version in installed.items()
        if name in newest and newest[name].version != version
    }
    assert behind == {}
    assert installed.keys() <= newest.keys()


# --- a local archive that publishes a newer version ---------------------------------------


@pytest.mark.engine
@pytest.mark.slow
def test_a_newer_package_in_an_archive_is_reported_and_picked_up_by_the_next_build(
    local_archive: tuple[Path, str], engine: Any, tmp_path: Path, cleanup_images: list[str]
) -> None:
    repo, uri = local_archive
    matrix = tmp_path / "runtimes.yaml"
    matrix.write_text(with_probe_archive((REPO / "runtimes.yaml").read_text(), uri))
    shutil.copy(REPO / "runtimes.lock.json", tmp_path / "runtimes.lock.json")
    namespace = f"aptfresh{secrets.token_hex(4)}"
    image = f"{namespace}/provided.debian12:x86_64"
    cleanup_images += [image, f"{namespace}/base-debian12:x86_64"]
    env = {
        **os.environ,
        "LAMBDA_IMAGES_NAMESPACE": namespace,
        # Roots made from this test's archive stay out of the shared cache.
        "LAMBDA_IMAGES_CACHE": str(tmp_path / "cache"),
    }
    common = ["--matrix", str(matrix), "--work", str(tmp_path / "work")]
    build = [*common, "build", "provided.debian12", "--arch", "x86_64", "--json"]
    outdated = [*common, "outdated", "provided.debian12", "--arch", "x86_64"]

    def build_state() -> str:
        result = cli(*build, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        (cell,) = json.loads(result.stdout)
        return str(cell["state"])

    make_deb(repo, "1.0", tmp_path)
    publish_repo(repo)
    assert build_state() == "built"
    assert dpkg_query(engine, image)[PROBE] == "1.0"
    assert cli(*outdated, env=env).returncode == 0

    make_deb(repo, "1.1", tmp_path)
    publish_repo(repo)
    behind = cli(*outdated, env=env)
    assert behind.returncode == OUTDATED_EXIT, behind.stderr
    assert f"  {PROBE}\t1.0 → 1.1\t(./)" in behind.stdout.splitlines()
    assert behind.stdout.startswith("provided.debian12/x86_64\toutdated: 1 package(s)")
    last = behind.stderr.strip().splitlines()[-1]
    assert last.endswith(
        "newer packages in the archives for provided.debian12/x86_64; rebuild them"
    )
    as_json = cli(*outdated, "--json", env=env)
    assert as_json.returncode == OUTDATED_EXIT
    (report,) = json.loads(as_json.stdout)
    assert report["upgrades"] == [
        {"package": PROBE, "installed": "1.0", "available": "1.1", "suite": "./"}
    ]

    # No --no-cache, no --force: the archive's new state is a new base.
    assert build_state() == "built"
    assert dpkg_query(engine, image)[PROBE] == "1.1"
    assert cli(*outdated, env=env).returncode == 0
    # And nothing moved since: the same state gives the same base, the build is skipped.
    assert build_state() == "skipped"
