"""A runtime branch carries the project's licence, and its README's clone command names the
remote the branch is pushed to (a URL git accepts, quoted as one word of a shell command)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.matrix import load_matrix
from pipeline.records import ArchSnapshot, ImageConfig, Layer
from pipeline.snapshot import branch_files, read_licence

REPO = Path(__file__).resolve().parents[2]


def snapshot(arch: str, docker_arch: str) -> ArchSnapshot:
    layer = Layer(
        file="a" * 64 + ".tar.xz", sha256="a" * 64, diff_id="sha256:" + "b" * 64, size=1,
        compressed_size=1,
    )  # fmt: skip
    config = ImageConfig(
        env=[], entrypoint=["/lambda-entrypoint.sh"], cmd=None, working_dir="/var/task",
        user="", labels={},
    )  # fmt: skip
    return ArchSnapshot(
        runtime="provided.debian12", arch=arch, docker_arch=docker_arch, image_id="sha256:c",
        layers=[layer], config=config,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("remote", "clone"),
    [
        ("file:///srv/git/images.git", "git clone -b provided.debian12 "
         "file:///srv/git/images.git provided.debian12 && cd provided.debian12"),
        ("git@github.com:example/lambda images.git", "git clone -b provided.debian12 "
         "'git@github.com:example/lambda images.git' provided.debian12 && cd provided.debian12"),
    ],
)  # fmt: skip
def test_a_branch_carries_the_licence_and_the_clone_command_of_its_remote(
    remote: str, clone: str
) -> None:
    runtime = load_matrix(REPO / "runtimes.yaml").runtime("provided.debian12")
    snaps = [snapshot("x86_64", "amd64"), snapshot("arm64", "arm64")]
    files = branch_files(runtime, snaps, remote=remote, licence=read_licence(REPO / "LICENSE"))
    assert files["LICENSE"] == (REPO / "LICENSE").read_text("utf-8")
    assert files["LICENSE"].splitlines()[1].strip() == "Apache License"
    readme = files["README.md"].splitlines()
    start = readme.index("```")
    assert readme[start : start + 4] == [
        "```",
        clone,
        "docker build -t provided.debian12:local -f Dockerfile.provided.debian12 .",
        "```",
    ]
    assert not any("<this repository>" in line for line in readme)


def test_branch_content_laid_out_before_any_push_names_no_remote() -> None:
    runtime = load_matrix(REPO / "runtimes.yaml").runtime("provided.debian12")
    readme = branch_files(runtime, [snapshot("x86_64", "amd64")])["README.md"].splitlines()
    start = readme.index("```")
    assert readme[start - 2 : start + 3] == [
        "Build it, in a clone of this branch (with git-lfs, for the tarballs):",
        "",
        "```",
        "docker build -t provided.debian12:local -f Dockerfile.provided.debian12 .",
        "```",
    ]
