"""Incremental rebuilds: the input digest of a cell, the skip it allows, and the publish plan."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

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
def test_second_rebuild_of_an_unchanged_runtime_skips_build_and_push(
    engine: Any, matrix: Matrix, tmp_path: Path, git_remote: str
) -> None:
    from conftest import make_run

    from pipeline.orchestrate import RebuildRequest, rebuild

    work = tmp_path / "work"
    run = make_run(matrix, work, engine)
    first = rebuild(
        run, RebuildRequest(runtime=matrix.runtime("provided.debian12"), remote=git_remote)
    )
    assert first.branch is not None and first.branch.pushed
    # (layer files are links into the shared layer cache, so a redone snapshot would show in
    # its record, rewritten, rather than in the layers)
    snapshots = {p: p.stat().st_mtime_ns for p in work.rglob("snapshot.json")}
    assert len(snapshots) == 2
    layers = {p.name: p.stat().st_mtime_ns for p in work.rglob("layers/*.tar.xz")}

    second = rebuild(
        run, RebuildRequest(runtime=matrix.runtime("provided.debian12"), remote=git_remote)
    )
    assert [c.state for c in second.cells] == ["skipped", "skipped"]
    assert [c.build.image_id for c in second.cells if c.build] == [
        c.build.image_id for c in first.cells if c.build
    ]
    assert second.branch is not None
    assert not second.branch.pushed
    assert second.branch.commit == first.branch.commit
    # the snapshot was not redone either: the very same layer files
    assert {p: p.stat().st_mtime_ns for p in work.rglob("snapshot.json")} == snapshots
    assert {p.name: p.stat().st_mtime_ns for p in work.rglob("layers/*.tar.xz")} == layers
    for image in (c.build.image for c in second.cells if c.build):
        assert engine.images.get(image).labels[INPUT_LABEL].startswith("sha256:")


@pytest.mark.engine
@pytest.mark.slow
def test_a_changed_input_rebuilds_the_cell(
    engine: Any, matrix: Matrix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import make_run

    from pipeline.orchestrate import build_cell, prepare_cell

    target = _target(matrix)
    work = tmp_path / "work"
    run = make_run(matrix, work, engine)
    build_cell(run, target, prepare_cell(run, target))
    _, skipped = build_cell(run, target, prepare_cell(run, target))
    assert skipped
    run.settings = dataclasses.replace(run.settings, source="https://example.com/changed")
    _, skipped = build_cell(run, target, prepare_cell(run, target))  # a label changed
    assert not skipped
    shutil.rmtree(work)
