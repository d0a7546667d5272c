"""End to end against the real engine: rebuild → images on both architectures → snapshot →
LFS branch → `docker build` of the branch gives the same image."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from image_tree import config_of, file_tree, uname_in

from pipeline.matrix import ARCHES, Matrix
from pipeline.records import ArchSnapshot
from pipeline.settings import Settings
from pipeline.snapshot import snapshot_dockerfile, snapshot_image
from pipeline.workdir import Cell, WorkDir

pytestmark = [pytest.mark.engine, pytest.mark.slow]

EPOCH = Settings.from_environ().epoch
RUNTIMES = [
    "provided.debian12",
    "python3.11.debian12",
    "provided.debian13",
    "python3.13.debian13",
    "nodejs20.x.debian13",
]

Rebuilt = Callable[[str], dict[str, Any]]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def session_remote(tmp_path_factory: pytest.TempPathFactory) -> str:
    remote = tmp_path_factory.mktemp("remote") / "images.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
    return f"file://{remote}"


@pytest.fixture(scope="session")
def rebuild_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work directory of its own: other tests' builds never overwrite these records."""
    return tmp_path_factory.mktemp("rebuild-work")


@pytest.fixture(scope="session")
def rebuilt(engine: Any, matrix: Matrix, rebuild_work: Path, session_remote: str) -> Rebuilt:
    """`lambda-images rebuild RUNTIME --git-remote …` once per runtime per session."""
    work = rebuild_work
    done: dict[str, dict[str, Any]] = {}

    def run(runtime_id: str) -> dict[str, Any]:
        if runtime_id not in done:
            # provided.debian12 is cheap: rebuild it without the layer cache, so that its RUN
            # steps really run (and report the architecture they run as).
            fresh = ["--no-cache"] if runtime_id == "provided.debian12" else []
            proc = cli(
                "--matrix", str(matrix.path), "--work", str(work),
                "rebuild", runtime_id, "--git-remote", session_remote, "--json", *fresh,
            )  # fmt: skip
            done[runtime_id] = json.loads(proc.stdout)
        return done[runtime_id]

    return run


@pytest.mark.parametrize("runtime_id", RUNTIMES)
def test_rebuild_produces_an_image_per_architecture(
    rebuilt: Rebuilt, engine: Any, rebuild_work: Path, runtime_id: str
) -> None:
    summary = rebuilt(runtime_id)
    images = {img["image"].rsplit(":", 1)[1]: img for img in summary["images"]}
    assert set(images) == {"x86_64", "arm64"}
    for arch, img in images.items():
        inspected = engine.images.get(img["image_id"]).attrs
        assert inspected["Architecture"] == ARCHES[arch].docker
        assert img["conformance"]["ok"] is True
        assert "invocation" in img["conformance"]["checks"]
        assert img["layers"] and img["snapshot_bytes"] > 0
        assert (
            img["image"]
            == f"{os.environ.get('LAMBDA_IMAGES_NAMESPACE') or 'lambda-images'}/{runtime_id}:{arch}"
        )
    if runtime_id == "provided.debian12":  # built with --no-cache
        # A RUN step of the arm64 build ran as aarch64 (under qemu on an x86_64 host).
        log = (rebuild_work / runtime_id / "arm64" / "build.log").read_text()
        assert "+ test aarch64 = aarch64" in log  # the template's `set -x` trace of its check
    assert summary["branch"]["pushed"] is True


def test_python_image_has_python_and_the_pinned_packages(
    rebuilt: Rebuilt, engine: Any, matrix: Matrix
) -> None:
    summary = rebuilt("python3.11.debian12")
    pins = dict(p.split("==") for p in matrix.runtime("python3.11.debian12").install.pip)
    script = (
        "import sys, importlib.metadata as m, awslambdaric, boto3;"
        "print(sys.version_info[:2], m.version('awslambdaric'), m.version('boto3'))"
    )
    for img in summary["images"]:
        out = engine.containers.run(
            img["image_id"], entrypoint=["python3", "-c", script], remove=True,
            environment={"PYTHONPATH": "/var/runtime"},
        ).decode().strip()  # fmt: skip
        assert out == f"(3, 11) {pins['awslambdaric']} {pins['boto3']}", img["image"]
        assert uname_in(engine, img["image_id"]) == ARCHES[img["image"].rsplit(":", 1)[1]].uname


def test_snapshotting_the_same_image_twice_is_byte_identical(
    rebuilt: Rebuilt, engine: Any, tmp_path: Path
) -> None:
    image = rebuilt("provided.debian12")["images"][0]["image_id"]
    outputs = []
    for attempt in ("one", "two"):
        folder = tmp_path / attempt
        snap = snapshot_image(
            engine,
            image,
            runtime_id="provided.debian12",
            arch=ARCHES["x86_64"],
            cell=Cell(folder, "provided.debian12", "x86_64"),
            epoch=EPOCH,
        )
        files = {p.name: p.read_bytes() for p in sorted((folder / "layers").iterdir())}
        outputs.append((files, snapshot_dockerfile(snap, "x86_64/")))
        for name, data in files.items():
            assert name == hashlib.sha256(data).hexdigest() + ".tar.xz"  # named by content
    assert outputs[0] == outputs[1]


def test_later_layer_overwrites_and_deletions_survive_the_round_trip(
    engine: Any, tmp_path: Path, cleanup_images: list[str], built: Callable[[str], Any]
) -> None:
    built("provided.debian12")  # makes sure the Debian base is loaded
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM lambda-images/base-debian12:x86_64\n"
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


@pytest.mark.parametrize("runtime_id", RUNTIMES)
def test_branch_clone_rebuilds_the_same_image(
    rebuilt: Rebuilt,
    engine: Any,
    session_remote: str,
    tmp_path: Path,
    cleanup_images: list[str],
    runtime_id: str,
) -> None:
    summary = rebuilt(runtime_id)
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "--quiet", "-b", runtime_id, session_remote, str(clone)], check=True
    )
    assert (clone / ".gitattributes").read_text().startswith("*.tar.xz filter=lfs")
    head = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert head == summary["branch"]["commit"]
    for arch, folder in (("x86_64", clone), ("arm64", clone / "arm64")):
        tarballs = list((clone / arch).glob("*.tar.xz"))
        assert tarballs and all(
            t.read_bytes()[:6] == b"\xfd7zXZ\x00" for t in tarballs
        )  # LFS fetched
        tag = f"lambda-images-test/{runtime_id}:{arch}-from-branch"
        cleanup_images.append(tag)
        engine.images.build(
            path=str(folder), dockerfile=f"Dockerfile.{runtime_id}", tag=tag, rm=True
        )
        # By id: other tests may have retagged the runtime's image since.
        original = next(i["image_id"] for i in summary["images"] if i["image"].endswith(f":{arch}"))
        assert config_of(engine, tag) == config_of(engine, original)
        assert file_tree(engine, tag) == file_tree(engine, original)
        assert uname_in(engine, tag) == ARCHES[arch].uname


def test_same_snapshot_gives_the_same_commit_and_no_push(
    rebuilt: Rebuilt, matrix: Matrix, rebuild_work: Path, session_remote: str
) -> None:
    from pipeline.branch import push_branch

    first = rebuilt("provided.debian12")["branch"]["commit"]
    again = push_branch(
        matrix.runtime("provided.debian12"),
        rebuild_work / "provided.debian12" / "branch",
        session_remote,
        os.environ,
        epoch=Settings.from_environ().epoch,
    )
    assert again.commit == first and again.pushed is False


def test_snapshot_record_matches_the_branch_tarballs(rebuilt: Rebuilt, rebuild_work: Path) -> None:
    rebuilt("provided.debian12")
    work = rebuild_work
    for arch in ("x86_64", "arm64"):
        snap = ArchSnapshot.require(WorkDir(work).cell("provided.debian12", arch))
        branch = work / "provided.debian12" / "branch" / arch
        assert sorted(p.name for p in branch.glob("*.tar.xz")) == sorted(
            {layer.file for layer in snap.layers}
        )
