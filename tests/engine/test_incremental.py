"""Incremental rebuilds: the input digest of a cell, the skip it allows, and the publish plan."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_runner import lambda_images
from conftest import Phase

from pipeline.incremental import INPUT_LABEL, published_digest
from pipeline.matrix import Matrix, Target

BASE_ID = "sha256:" + "1" * 64


def _target(matrix: Matrix, runtime: str = "provided.debian12", arch: str = "x86_64") -> Target:
    return next(t for t in matrix.targets([matrix.runtime(runtime)]) if t.arch.name == arch)


def test_published_digest_comes_from_the_runtimes_branch(
    matrix: Matrix, tmp_path: Path, git_remote: str
) -> None:
    target = _target(matrix, arch="arm64")
    assert published_digest(git_remote, target, os.environ) is None  # no branch yet
    digest = "sha256:" + "d" * 64
    repo = tmp_path / "repo"
    rt = target.runtime.id
    (repo / "arm64").mkdir(parents=True)
    (repo / "arm64" / f"Dockerfile.{rt}").write_text(f'LABEL "{INPUT_LABEL}"="{digest}"\n')
    (repo / f"Dockerfile.{rt}").write_text("FROM scratch\n")

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q", "-b", rt)
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "snapshot")
    git("push", "-q", git_remote, f"HEAD:refs/heads/{rt}")
    assert published_digest(git_remote, target, os.environ) == digest
    assert published_digest(git_remote, _target(matrix, arch="x86_64"), os.environ) is None


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.cells("provided.debian12")
def test_a_rebuild_of_an_unchanged_runtime_skips_build_snapshot_and_push(
    engine: Any, matrix: Matrix, phase: Phase
) -> None:
    """The build phase built, snapshotted and pushed provided.debian12; `rebuild` of it in the
    same work folder finds nothing to do."""
    from conftest import make_run

    from pipeline.orchestrate import RebuildRequest, rebuild

    cells = [phase.cell("provided.debian12", arch) for arch in ("x86_64", "arm64")]
    # (layer files are links into the shared layer cache, so a redone snapshot would show in
    # its record, rewritten, rather than in the layers)
    snapshots = {c.record("snapshot.json"): c.record("snapshot.json").stat().st_mtime_ns
                 for c in cells}  # fmt: skip
    layers = {p: p.stat().st_mtime_ns for c in cells for p in c.layers.glob("*.tar.xz")}
    run = make_run(matrix, phase.work, engine)
    request = RebuildRequest(runtime=matrix.runtime("provided.debian12"), remote=phase.remote)
    again = rebuild(run, request)
    assert [c.state for c in again.cells] == ["skipped", "skipped"]
    assert [c.build.image_id for c in again.cells if c.build] == [
        phase.build_record("provided.debian12", arch).image_id for arch in ("x86_64", "arm64")
    ]
    assert again.branch is not None
    assert not again.branch.pushed
    assert again.branch.commit == phase.branch("provided.debian12")
    # the snapshot was not redone either: the very same layer files
    assert {p: p.stat().st_mtime_ns for p in snapshots} == snapshots
    assert {p: p.stat().st_mtime_ns for p in layers} == layers
    for cell in again.cells:
        assert cell.build is not None
        assert engine.images.get(cell.build.image).labels[INPUT_LABEL] == cell.inputs.digest

    # A plain `rebuild` again, as a maintainer types it: one line per cell says it is unchanged
    # and why, and its log shows no check, no snapshot and no branch commit.
    proc = lambda_images(
        "--work", str(phase.work), "rebuild", "provided.debian12", "--git-remote", phase.remote,
        check=True,
    )  # fmt: skip
    lines = (proc.stdout + proc.stderr).splitlines()
    for cell in again.cells:
        assert cell.build is not None
        assert (
            f"{cell.target.key}: unchanged (inputs {cell.inputs.digest[7:19]}, image "
            f"{cell.build.image_id[7:19]}; its checks passed on it, its snapshot is current): "
            "nothing to do"
        ) in lines
    commit = phase.branch("provided.debian12")
    assert (
        f"provided.debian12: branch already at {commit[:12]} with this content, nothing to push"
        in lines
    )
    for work in ("==> test ", "==> snapshot ", "+ docker run ", "+ docker save ", "==> build "):
        assert not [line for line in lines if line.startswith(work)], work
    assert not [line for line in lines if "pip install" in line or "loading " in line]
    assert {p: p.stat().st_mtime_ns for p in snapshots} == snapshots


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.cells("provided.debian12/x86_64")
def test_a_changed_input_rebuilds_the_cell(
    engine: Any, matrix: Matrix, phase: Phase, tmp_path: Path, cleanup_images: list[str]
) -> None:
    """In a work folder and an image namespace of its own (the relabelled image must not take
    the build phase's tag); its builds come from the build cache the phase filled."""
    from conftest import make_run

    from pipeline.orchestrate import build_cell, prepare_cell

    own = dataclasses.replace(matrix, namespace="lambda-images-incremental")
    target = _target(own)
    cleanup_images += [target.image_tag, target.base_image]
    work = tmp_path / "work"
    run = make_run(own, work, engine)
    build_cell(run, target, prepare_cell(run, target))
    _, skipped = build_cell(run, target, prepare_cell(run, target))
    assert skipped
    run.settings = dataclasses.replace(run.settings, source="https://example.com/changed")
    _, skipped = build_cell(run, target, prepare_cell(run, target))  # a label changed
    assert not skipped
    shutil.rmtree(work)
