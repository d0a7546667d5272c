"""End to end against the real engine, on what the build phase made of five rows: an image per
architecture that passed every check → a snapshot → an LFS branch → `docker build` of the branch
gives the same image. provided.debian12/arm64 is built without the build cache, so that its RUN
steps really run (and report the architecture they ran as)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_runner import lambda_images
from conftest import Phase
from image_tree import config_of, file_tree, uname_in

from pipeline.matrix import ARCHES, Matrix
from pipeline.settings import Settings
from pipeline.snapshot import snapshot_dockerfile, snapshot_image
from pipeline.workdir import Cell

RUNTIMES = [
    "provided.debian12",
    "python3.11.debian12",
    "provided.debian13",
    "python3.13.debian13",
    "nodejs20.x.debian13",
]
# Each row's tests read that row's cells only, so that a lane can select rows (--rows).
ROWS = [pytest.param(rt, marks=pytest.mark.cells(rt), id=rt) for rt in RUNTIMES]
pytestmark = [
    pytest.mark.engine,
    pytest.mark.slow,
    pytest.mark.cells("provided.debian12/arm64", no_cache=True),
]
EPOCH = Settings.from_environ().epoch
CHECKS = [
    "invocation",
    "read-only-rootfs",
    "readable-files",
    "entrypoint",
    "size",
    "architecture",
    "manifest",
    "no-credentials",
]


@pytest.mark.parametrize("runtime_id", ROWS)
def test_each_row_gives_an_image_per_architecture_checked_snapshotted_and_branched(
    phase: Phase, engine: Any, runtime_id: str
) -> None:
    namespace = os.environ.get("LAMBDA_IMAGES_NAMESPACE") or "lambda-images"
    for arch in ("x86_64", "arm64"):
        record = phase.build_record(runtime_id, arch)
        assert record.image == f"{namespace}/{runtime_id}:{arch}"
        inspected = engine.images.get(record.image_id).attrs
        assert inspected["Architecture"] == ARCHES[arch].docker
        report = phase.conformance(runtime_id, arch)
        assert report.ok and [c.name for c in report.checks] == CHECKS
        assert report.image == record.image
        assert phase.snapshot(runtime_id, arch).layers
    if runtime_id == "provided.debian12":  # its arm64 cell was built without the cache
        # A RUN step of the arm64 build ran as aarch64 (under qemu on an x86_64 host).
        log = phase.cell(runtime_id, "arm64").build_log.read_text()
        assert "+ test aarch64 = aarch64" in log  # the template's `set -x` trace of its check
    assert len(phase.branch(runtime_id)) == 40


@pytest.mark.cells("python3.11.debian12")
def test_python_image_has_python_and_the_pinned_packages(
    phase: Phase, engine: Any, matrix: Matrix
) -> None:
    pins = dict(p.split("==") for p in matrix.runtime("python3.11.debian12").install.pip)
    script = (
        "import sys, importlib.metadata as m, awslambdaric, boto3;"
        "print(sys.version_info[:2], m.version('awslambdaric'), m.version('boto3'))"
    )
    major, minor = matrix.runtime("python3.11.debian12").version.split(".")
    for arch in ("x86_64", "arm64"):
        image = phase.build_record("python3.11.debian12", arch).image_id
        out = engine.containers.run(
            image, entrypoint=["python3", "-c", script], remove=True,
            environment={"PYTHONPATH": "/var/runtime"},
        ).decode().strip()  # fmt: skip
        assert out == f"({major}, {minor}) {pins['awslambdaric']} {pins['boto3']}", arch
        assert uname_in(engine, image) == ARCHES[arch].uname


@pytest.mark.cells("provided.debian12/x86_64")
def test_a_snapshot_made_again_in_another_process_is_byte_identical(
    phase: Phase, engine: Any, tmp_path: Path
) -> None:
    """The phase snapshotted the image in a `lambda-images snapshot` process (its layers may come
    from the compressed-layer cache); compressing them again here gives the same bytes."""
    made = phase.snapshot("provided.debian12", "x86_64")
    image = phase.build_record("provided.debian12", "x86_64").image_id
    again = snapshot_image(
        engine,
        image,
        runtime_id="provided.debian12",
        arch=ARCHES["x86_64"],
        cell=Cell(tmp_path / "again", "provided.debian12", "x86_64"),
        epoch=EPOCH,
    )
    assert again.layers == made.layers
    assert snapshot_dockerfile(again, "x86_64/") == snapshot_dockerfile(made, "x86_64/")
    for layer in again.layers:
        data = (tmp_path / "again" / "layers" / layer.file).read_bytes()
        assert layer.file == hashlib.sha256(data).hexdigest() + ".tar.xz"  # named by content
        assert data == (phase.cell("provided.debian12", "x86_64").layers / layer.file).read_bytes()


@pytest.mark.cells("provided.debian12/x86_64")
def test_later_layer_overwrites_and_deletions_survive_the_round_trip(
    engine: Any, tmp_path: Path, cleanup_images: list[str], phase: Phase
) -> None:
    base = phase.targets("provided.debian12")["x86_64"].base_image  # loaded by the phase
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {base}\n"
        "RUN mkdir -p /data/sub && echo one > /data/a && echo keep > /data/k"
        " && echo x > /data/sub/f && echo gone > /data/b\n"
        "RUN echo two > /data/a && rm /data/k && rm -rf /data/sub\n"
        "RUN rm -rf /data && mkdir /data && echo three > /data/b\n"
    )
    name = "lambda-images-test/whiteouts:x86_64"
    rebuilt_name = "lambda-images-test/whiteouts:rebuilt"
    cleanup_images += [name, rebuilt_name]
    engine.images.build(path=str(ctx), tag=name, rm=True, pull=False)
    snap = snapshot_image(
        engine,
        name,
        runtime_id="whiteouts",
        arch=ARCHES["x86_64"],
        cell=Cell(tmp_path / "snap", "whiteouts", "x86_64"),
        epoch=EPOCH,
    )
    branch = tmp_path / "snap" / "layers"
    (branch / "Dockerfile").write_text(snapshot_dockerfile(snap, ""))
    engine.images.build(path=str(branch), tag=rebuilt_name, rm=True)
    listing = engine.containers.run(
        rebuilt_name, entrypoint=["sh", "-c", "find /data | sort; cat /data/b"], remove=True
    ).decode()
    assert listing.split() == ["/data", "/data/b", "three"]
    assert file_tree(engine, rebuilt_name) == file_tree(engine, name)


@pytest.mark.parametrize("runtime_id", ROWS)
def test_branch_clone_rebuilds_the_same_image(
    phase: Phase, engine: Any, tmp_path: Path, cleanup_images: list[str], runtime_id: str
) -> None:
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "--quiet", "-b", runtime_id, phase.remote, str(clone)], check=True
    )
    assert (clone / ".gitattributes").read_text().startswith("*.tar.xz filter=lfs")
    head = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert head == phase.branch(runtime_id)
    for arch, folder in (("x86_64", clone), ("arm64", clone / "arm64")):
        tarballs = sorted((clone / arch).glob("*.tar.xz"))
        # The branch holds exactly the snapshot's layers, fetched through LFS (not pointers).
        snap = phase.snapshot(runtime_id, arch)
        assert [t.name for t in tarballs] == sorted({layer.file for layer in snap.layers})
        assert all(t.read_bytes()[:6] == b"\xfd7zXZ\x00" for t in tarballs)
        tag = f"lambda-images-test/{runtime_id}:{arch}-from-branch"
        cleanup_images.append(tag)
        engine.images.build(
            path=str(folder), dockerfile=f"Dockerfile.{runtime_id}", tag=tag, rm=True
        )
        # By id: other tests may have retagged the runtime's image since.
        original = phase.build_record(runtime_id, arch).image_id
        assert config_of(engine, tag) == config_of(engine, original)
        assert file_tree(engine, tag) == file_tree(engine, original)
        assert uname_in(engine, tag) == ARCHES[arch].uname


@pytest.mark.cells("provided.debian12")
def test_same_snapshot_gives_the_same_commit_and_no_push(phase: Phase, matrix: Matrix) -> None:
    proc = lambda_images(
        "--matrix", str(matrix.path), "--work", str(phase.work),
        "branch", "provided.debian12", "--git-remote", phase.remote, check=True,
    )  # fmt: skip
    runtime, commit, state = proc.stdout.strip().splitlines()[-1].split("\t")
    assert (runtime, commit) == ("provided.debian12", phase.branch("provided.debian12"))
    assert state == "unchanged"
