"""Build on one machine, publish on another: the stages hand over through directories only.

Each cell is built in a process of its own with a work directory of its own and writes its
output with ``build --out``; the publishing process sees nothing but those output directories
(merged the way ``actions/download-artifact`` merges them), as in the scheduled workflow.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

RUNTIME = "provided.debian12"
MATRIX = Path(__file__).resolve().parent.parent / "runtimes.yaml"
CLI = [sys.executable, "-c", "from pipeline.cli import main; main()"]

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def lambda_images(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*CLI, "--matrix", str(MATRIX), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env=os.environ,
    )
    assert proc.returncode == 0, f"lambda-images {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def cell_outputs(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both cells of provided.debian12, each built by its own process into its own folder."""
    root = tmp_path_factory.mktemp("split")
    outs = {}
    for arch in ("x86_64", "arm64"):
        machine = root / f"machine-{arch}"
        machine.mkdir()
        lambda_images(
            "--work", str(machine / "work"),
            "build", RUNTIME, "--arch", arch, "--out", str(machine / "out"),
            cwd=machine,
        )  # fmt: skip
        outs[arch] = machine / "out"
    return outs


def test_cell_output_holds_records_and_layers_only(cell_outputs: dict[str, Path]) -> None:
    for arch, out in cell_outputs.items():
        folder = out / RUNTIME / arch
        names = sorted(p.name for p in folder.iterdir())
        assert names == ["build.json", "inputs.json", "layers", "snapshot.json"]
        snap = json.loads((folder / "snapshot.json").read_text())
        assert snap["arch"] == arch
        assert sorted(p.name for p in (folder / "layers").iterdir()) == sorted(
            layer["file"] for layer in snap["layers"]
        )
        assert json.loads((folder / "inputs.json").read_text())["state"] == "built"
        assert [p.name for p in out.iterdir()] == [RUNTIME]


def _merge(outs: dict[str, Path], into: Path) -> Path:
    for out in outs.values():
        shutil.copytree(out, into, dirs_exist_ok=True)
    return into


def test_branch_is_pushed_from_artifact_directories_alone(
    cell_outputs: dict[str, Path], tmp_path: Path, git_remote: str
) -> None:
    publisher = tmp_path / "publisher"
    merged = _merge(cell_outputs, publisher / "cells")
    proc = lambda_images("--work", str(merged), "branch", RUNTIME, "--git-remote", git_remote,
                         cwd=publisher)  # fmt: skip
    runtime, commit, state = proc.stdout.strip().splitlines()[-1].split("\t")
    assert (runtime, state) == (RUNTIME, "pushed")

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "-b", RUNTIME, git_remote, str(clone)], check=True)
    for arch, out in cell_outputs.items():
        snap = json.loads((out / RUNTIME / arch / "snapshot.json").read_text())
        for layer in snap["layers"]:
            path = clone / arch / layer["file"]
            assert path.stat().st_size == layer["compressed_size"]  # LFS content, not a pointer
        assert (clone / arch / f"Dockerfile.{RUNTIME}").is_file()

    again = lambda_images("--work", str(merged), "branch", RUNTIME, "--git-remote", git_remote,
                          cwd=publisher)  # fmt: skip
    assert again.stdout.strip().splitlines()[-1].split("\t") == [RUNTIME, commit, "unchanged"]


def _has_publish() -> bool:
    proc = subprocess.run([*CLI, "--help"], capture_output=True, text=True, check=False)
    return any(line.split()[:1] == ["publish"] for line in proc.stdout.splitlines())


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A CNCF distribution registry on 127.0.0.1 (the docker-registry package)."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not Path(binary).exists():
        pytest.fail("docker-registry is not installed (apt-get install docker-registry)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {tmp_path / 'registry'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen([binary, "serve", str(config)], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(not _has_publish(), reason="`lambda-images publish` is not a command yet")
def test_publish_from_artifact_directories_alone(
    cell_outputs: dict[str, Path], tmp_path: Path, git_remote: str, registry: str
) -> None:
    publisher = tmp_path / "publisher"
    publisher.mkdir()
    args = [f"--from={out}" for out in cell_outputs.values()]
    lambda_images(
        "--work", str(publisher / "work"),
        "publish", RUNTIME, *args, "--registry", f"{registry}/lambda",
        "--git-remote", git_remote, "--report", str(publisher / "report.json"),
        cwd=publisher,
    )  # fmt: skip
    assert (publisher / "report.json").is_file()
    heads = subprocess.run(
        ["git", "ls-remote", "--heads", git_remote], capture_output=True, text=True, check=True
    ).stdout
    assert f"refs/heads/{RUNTIME}" in heads
