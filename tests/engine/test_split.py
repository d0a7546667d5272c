"""Build on one machine, publish on another: the stages hand over through directories only.

Each cell's job writes its output with ``build --out`` into a folder of its own (here, from the
build phase's work folder, where the cell is already built, checked and snapshotted: the job finds
it unchanged and exports it); the publishing process sees nothing but those output folders
(merged the way ``actions/download-artifact`` merges them), as in the scheduled workflow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_runner import lambda_images as cli
from conftest import Phase

RUNTIME = "provided.debian12"
MATRIX = Path(__file__).resolve().parents[2] / "runtimes.yaml"

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.cells(RUNTIME)]


def lambda_images(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return cli("--matrix", str(MATRIX), *args, cwd=cwd, check=True)


@pytest.fixture(scope="module")
def cell_outputs(phase: Phase, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both cells of provided.debian12, each exported by its own process into its own folder."""
    root = tmp_path_factory.mktemp("split")
    outs = {}
    for arch in ("x86_64", "arm64"):
        machine = root / f"machine-{arch}"
        machine.mkdir()
        lambda_images(
            "--work", str(phase.work),
            "build", RUNTIME, "--arch", arch, "--out", str(machine / "out"),
            cwd=machine,
        )  # fmt: skip
        outs[arch] = machine / "out"
    return outs


def test_cell_output_holds_records_and_layers_only(cell_outputs: dict[str, Path]) -> None:
    for arch, out in cell_outputs.items():
        folder = out / RUNTIME / arch
        names = sorted(p.name for p in folder.iterdir())
        assert names == ["build.json", "inputs.json", "layers", "snapshot.json", "test.json"]
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


def test_publish_from_artifact_directories_alone(
    cell_outputs: dict[str, Path], tmp_path: Path, git_remote: str, registry_server: Any
) -> None:
    from pipeline.oci.credentials import PASSWORD_ENV, USER_ENV

    publisher = tmp_path / "publisher"
    merged = _merge(cell_outputs, publisher / "cells")
    env = {
        **os.environ,
        USER_ENV: registry_server.username,
        PASSWORD_ENV: registry_server.password,
    }
    cli(
        "--matrix", str(MATRIX), "--work", str(merged), "publish", RUNTIME,
        "--registry", f"{registry_server.host}/split", "--git-remote", git_remote,
        "--report", str(publisher / "report.json"), cwd=publisher, env=env, check=True,
    )  # fmt: skip
    report = json.loads((publisher / "report.json").read_text())
    assert report["published"] == [RUNTIME]
    assert report["bytes_uploaded"] > 0
    assert report["runtimes"][0]["index"].startswith("sha256:")
    heads = subprocess.run(
        ["git", "ls-remote", "--heads", git_remote], capture_output=True, text=True, check=True
    ).stdout
    assert f"refs/heads/{RUNTIME}" in heads
