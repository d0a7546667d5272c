"""Two engines, one snapshot: Docker 20.10's classic builder and Docker 26's BuildKit must give the
same layer tarballs, and a branch must rebuild with BuildKit as the arm64 image it came from.

Each engine's test lane has its own build phase; .ci/run compares the two phases' snapshot records
once both lanes are done (``two_engines``: this run's phase against the work folder named by
LAMBDA_IMAGES_COMPARE_WORK). The BuildKit rebuild of a branch runs in the second engine's lane,
on that lane's phase branches.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import Phase, run_folder
from image_tree import config_of, file_tree, uname_in

from pipeline import buildkit
from pipeline.snapshot import require_snapshot
from pipeline.workdir import WorkDir

RUNTIMES = ["provided.debian12", "python3.11.debian12"]


def _layers(work: Path, runtime: str) -> dict[str, list[str]]:
    """The layer files of each architecture's snapshot of ``runtime`` in a phase work folder."""
    out = {}
    for arch in ("x86_64", "arm64"):
        snap = require_snapshot(WorkDir(work).cell(runtime, arch))
        out[arch] = [layer.file for layer in snap.layers]
    return out


@pytest.mark.two_engines
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_both_engines_snapshot_to_the_same_layer_tarballs(runtime: str) -> None:
    here = _layers(run_folder() / "phase" / "work", runtime)
    there = _layers(Path(os.environ["LAMBDA_IMAGES_COMPARE_WORK"]), runtime)
    assert here == there
    assert all(here.values())


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.buildkit
@pytest.mark.parametrize(
    "runtime", [pytest.param(rt, marks=pytest.mark.cells(rt), id=rt) for rt in RUNTIMES]
)
def test_a_branch_rebuilds_as_arm64_with_buildkit(
    engine: Any, phase: Phase, tmp_path: Path, runtime: str
) -> None:
    """`docker buildx build --platform linux/arm64 -f Dockerfile.<runtime> .` in the branch's
    arm64/ folder, as the README tells users, gives the pipeline's arm64 image: same files (the
    Python image's package step deletes files, which BuildKit's ADD would not replay), same
    config, labelled arm64."""
    assert buildkit.engine_builder(engine) == "buildkit", "this lane's engine must be BuildKit's"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "-b", runtime, phase.remote, str(clone)], check=True)
    tag = f"lambda-images-test/{runtime}:arm64-from-branch-buildkit"
    lines = buildkit.build_image(
        engine, clone / "arm64", tag=tag, platform="linux/arm64", labels={},
        dockerfile=f"Dockerfile.{runtime}",
    )  # fmt: skip
    for _ in lines:
        pass
    try:
        rebuilt = engine.images.get(tag)
        original = phase.build_record(runtime, "arm64").image_id
        assert rebuilt.attrs["Architecture"] == "arm64"
        assert config_of(engine, tag) == config_of(engine, original)
        assert file_tree(engine, tag) == file_tree(engine, original)
        assert uname_in(engine, tag) == "aarch64"
    finally:
        engine.images.remove(tag, force=True)
