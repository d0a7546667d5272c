"""A fresh Debian image holds no package with a newer version in its archives — in the archives as
they were when its base was made (the Release files kept beside the cached root, their indices
fetched by hash), so an upload Debian publishes while the tests run cannot fail this.

What happens when an archive does publish a newer version (outdated names it, the next build
picks it up, refresh republishes) is test_refresh.py's, on an archive of the tests' own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from apt_repo import dpkg_query
from conftest import BuiltImages

from pipeline import apt
from pipeline.base import APT_STATE_LABEL, find_rootfs, recorded_releases
from pipeline.matrix import AptArchive
from pipeline.settings import Settings


def cat(engine: Any, image: str, path: str) -> str:
    output: bytes = engine.containers.run(
        image, entrypoint=["cat"], command=[path], remove=True, network_disabled=True
    )
    return output.decode()


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.cells("provided.debian12")
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
    state = engine.images.get(target.image_tag).labels[APT_STATE_LABEL]
    root = find_rootfs(Settings.from_environ().cache, "debian12", target.arch.debian, state)
    assert root is not None, f"no cached root of {target.key}'s base (state {state[:19]})"
    releases = recorded_releases(root)
    assert sorted(releases) == lines  # every archive's Release file, as it was then
    newest = apt.newest_versions(archives, target.arch.debian, tmp_path / "indices", releases)
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
