"""Two engines, one snapshot: Docker 20.10's classic builder and Docker 26's BuildKit must give the
same layer tarballs, and a branch must rebuild with BuildKit as the arm64 image it came from.

The engine under test is DOCKER_HOST (the second engine in CI); the one to compare with is
LAMBDA_IMAGES_COMPARE_WITH (CI sets it to the machine's own engine). Without it these tests are
skipped: they need two engines at once.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import docker
import pytest
from conftest import make_run
from image_tree import config_of, file_tree, uname_in

from pipeline import buildkit, orchestrate
from pipeline.matrix import Matrix

pytestmark = [pytest.mark.engine, pytest.mark.slow]

RUNTIMES = ["provided.debian12", "python3.11.debian12"]


@pytest.fixture(scope="module")
def other_engine() -> Any:
    where = os.environ.get("LAMBDA_IMAGES_COMPARE_WITH", "")
    if not where:
        pytest.skip("LAMBDA_IMAGES_COMPARE_WITH names no second engine to compare with")
    client = docker.DockerClient(base_url=where, timeout=1800)
    client.ping()
    return client


def _snapshot_layers(matrix: Matrix, work: Path, client: Any, runtime: str) -> dict[str, list]:
    run = make_run(matrix, work, client)
    layers = {}
    for target in matrix.targets([matrix.runtime(runtime)]):
        result = orchestrate.run_cell(run, target, snapshot=True)
        assert result.snapshot is not None
        assert result.build is not None and result.build.architecture == target.arch.docker
        layers[target.arch.name] = [layer.file for layer in result.snapshot.layers]
    return layers


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_both_engines_snapshot_to_the_same_layer_tarballs(
    engine: Any, other_engine: Any, matrix: Matrix, tmp_path: Path, runtime: str
) -> None:
    here = _snapshot_layers(matrix, tmp_path / "here", engine, runtime)
    there = _snapshot_layers(matrix, tmp_path / "there", other_engine, runtime)
    assert here == there
    assert set(here) == {"x86_64", "arm64"}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_branch_rebuilds_as_arm64_with_buildkit(
    engine: Any, matrix: Matrix, tmp_path: Path, git_remote: str, runtime: str
) -> None:
    """`docker buildx build --platform linux/arm64 -f Dockerfile.<runtime> .` in the branch's
    arm64/ folder, as the README tells users, gives the pipeline's arm64 image: same files (the
    Python image's package step deletes files, which BuildKit's ADD would not replay), same
    config, labelled arm64."""
    if buildkit.engine_builder(engine) != "buildkit":
        pytest.skip("the engine builds with the classic builder")
    run = make_run(matrix, tmp_path / "work", engine)
    summary = orchestrate.rebuild(
        run, orchestrate.RebuildRequest(runtime=run.matrix.runtime(runtime), remote=git_remote)
    )
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "-b", runtime, git_remote, str(clone)], check=True)
    tag = f"lambda-images-test/{runtime}:arm64-from-branch-buildkit"
    lines = buildkit.build_image(
        engine, clone / "arm64", tag=tag, platform="linux/arm64", labels={},
        dockerfile=f"Dockerfile.{runtime}",
    )  # fmt: skip
    for _ in lines:
        pass
    try:
        rebuilt = engine.images.get(tag)
        original = next(c.build.image_id for c in summary.cells if c.target.arch.name == "arm64")
        assert rebuilt.attrs["Architecture"] == "arm64"
        assert config_of(engine, tag) == config_of(engine, original)
        assert file_tree(engine, tag) == file_tree(engine, original)
        assert uname_in(engine, tag) == "aarch64"
    finally:
        engine.images.remove(tag, force=True)
