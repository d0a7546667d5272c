"""Incremental rebuilds: the input digest of a cell, the skip it allows, and the publish plan."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pipeline.build import CONTEXT_SHA256S, context_digest
from pipeline.incremental import INPUT_LABEL, cell_inputs, parse_label, plan
from pipeline.lock import Lock, LockedFile, LockedModule
from pipeline.matrix import Matrix, Target
from pipeline.records import InputsRecord
from pipeline.render import render_target, write_context
from pipeline.settings import Settings
from pipeline.workdir import WorkDir

BASE_ID = "sha256:" + "1" * 64


def _target(matrix: Matrix, runtime: str = "provided.debian12", arch: str = "x86_64") -> Target:
    return next(t for t in matrix.targets([matrix.runtime(runtime)]) if t.arch.name == arch)


def _context(target: Target, where: Path) -> Path:
    return write_context(render_target(target), where / "context")


def _digest(
    target: Target, context: Path, lock: Lock, base: str = BASE_ID, epoch: int = 1704067200
) -> str:
    return cell_inputs(target, context, base, lock, Settings(epoch=epoch)).digest


def test_digest_is_stable_for_the_same_inputs(matrix: Matrix, tmp_path: Path) -> None:
    target = _target(matrix)
    lock = Lock(path=tmp_path / "runtimes.lock.json")
    one = _digest(target, _context(target, tmp_path / "a"), lock)
    two = _digest(target, _context(target, tmp_path / "b"), lock)
    assert one == two
    assert one.startswith("sha256:") and len(one) == 71


def test_digest_changes_with_the_rendered_template(matrix: Matrix, tmp_path: Path) -> None:
    target = _target(matrix)
    lock = Lock(path=tmp_path / "runtimes.lock.json")
    context = _context(target, tmp_path)
    before = _digest(target, context, lock)
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "RUN true\n")
    assert _digest(target, context, lock) != before


def test_digest_changes_with_a_context_file_mode(matrix: Matrix, tmp_path: Path) -> None:
    target = _target(matrix)
    lock = Lock(path=tmp_path / "runtimes.lock.json")
    context = _context(target, tmp_path)
    before = _digest(target, context, lock)
    (context / "lambda-entrypoint.sh").chmod(0o700)
    assert _digest(target, context, lock) != before


def test_digest_changes_with_the_base_image(matrix: Matrix, tmp_path: Path) -> None:
    target = _target(matrix)
    lock = Lock(path=tmp_path / "runtimes.lock.json")
    context = _context(target, tmp_path)
    assert _digest(target, context, lock) != _digest(
        target, context, lock, base="sha256:" + "2" * 64
    )


def test_digest_changes_with_the_cells_lock_entries_only(matrix: Matrix, tmp_path: Path) -> None:
    target = _target(matrix, "python3.11.debian12", "arm64")
    context = _context(target, tmp_path)
    lock = Lock(path=tmp_path / "runtimes.lock.json")
    wheel = LockedFile(filename="awslambdaric-3.1.1-cp311-none-any.whl", sha256="a" * 64)
    lock.pip = {"python3.11.debian12": {"arm64": [wheel], "x86_64": [wheel]}}
    before = _digest(target, context, lock)
    other = LockedFile(filename=wheel.filename, sha256="b" * 64)
    lock.pip["python3.11.debian12"]["x86_64"] = [other]  # another cell's entry
    assert _digest(target, context, lock) == before
    lock.pip["python3.11.debian12"]["arm64"] = [other]
    assert _digest(target, context, lock) != before


def test_digest_differs_between_architectures(matrix: Matrix, tmp_path: Path) -> None:
    lock = Lock(path=tmp_path / "runtimes.lock.json")
    x86, arm = _target(matrix, arch="x86_64"), _target(matrix, arch="arm64")
    assert _digest(x86, _context(x86, tmp_path / "x"), lock) != _digest(
        arm, _context(arm, tmp_path / "a"), lock
    )


def test_digest_changes_with_the_epoch(matrix: Matrix, tmp_path: Path) -> None:
    target = _target(matrix)
    lock = Lock(path=tmp_path / "runtimes.lock.json")
    context = _context(target, tmp_path)
    before = _digest(target, context, lock, epoch=1700000000)
    assert _digest(target, context, lock, epoch=1700000001) != before


def test_label_is_read_back_from_a_snapshot_dockerfile() -> None:
    digest = "sha256:" + "c" * 64
    text = f'FROM scratch\nADD a.tar.xz /\nLABEL "{INPUT_LABEL}"="{digest}"\nLABEL "x"="y"\n'
    assert parse_label(text) == digest
    assert parse_label("FROM scratch\n") is None


def test_plan_publishes_changed_runtimes_whole() -> None:
    cells = [
        {"runtime": "a", "arch": "x86_64", "runner": "ubuntu-24.04"},
        {"runtime": "a", "arch": "arm64", "runner": "ubuntu-24.04-arm"},
        {"runtime": "b", "arch": "x86_64", "runner": "ubuntu-24.04"},
        {"runtime": "b", "arch": "arm64", "runner": "ubuntu-24.04-arm"},
        {"runtime": "c", "arch": "x86_64", "runner": "ubuntu-24.04"},
        {"runtime": "c", "arch": "arm64", "runner": "ubuntu-24.04-arm"},
    ]
    states = {
        ("a", "x86_64"): "unchanged",
        ("a", "arm64"): "unchanged",
        ("b", "x86_64"): "built",
        ("b", "arm64"): "unchanged",
        ("c", "x86_64"): "built",  # c/arm64 failed: no state
    }
    result = plan(cells, states)
    assert result.publish == ["b"]
    assert result.unchanged == ["a"]
    assert result.incomplete == ["c"]
    assert result.refill == [cells[3]]


def test_plan_cli_reads_cell_outputs(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from pipeline.cli import cli

    cells = tmp_path / "cells.json"
    cells.write_text(json.dumps({"include": [{"runtime": "a", "arch": "x86_64"}]}))
    cell = WorkDir(tmp_path / "states").cell("a", "x86_64")
    InputsRecord(
        runtime="a", arch="x86_64", digest="sha256:" + "0" * 64, parts={}, state="built"
    ).write(cell)
    states = str(tmp_path / "states")
    result = CliRunner().invoke(cli, ["plan", "--cells", str(cells), states, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["publish"] == ["a"]


# --- against the engine -------------------------------------------------------------------


def test_digest_changes_with_the_built_emulator(matrix: Matrix, tmp_path: Path) -> None:
    """The RIE binary built on the host and its lock entries are part of the cell's digest."""
    target = _target(matrix, "python3.11.debian12", "arm64")
    context = _context(target, tmp_path)
    lock = Lock(path=tmp_path / "runtimes.lock.json")
    binary = context / "inputs" / "aws-lambda-rie"
    binary.parent.mkdir()
    binary.write_bytes(b"rie built once\n")
    before = _digest(target, context, lock)
    binary.write_bytes(b"rie built from another module tree\n")
    rebuilt = _digest(target, context, lock)
    assert rebuilt != before
    rie = next(i for i in target.runtime.all_inputs() if i.name == "rie")
    assert rie.build is not None
    lock.go["rie"] = LockedModule(
        module=rie.build.module, version=rie.version, sum="h1:" + "A" * 43 + "="
    )
    relocked = _digest(target, context, lock)
    assert relocked != rebuilt
    lock.go["rie"] = LockedModule(
        module=rie.build.module, version=rie.version, sum="h1:" + "B" * 43 + "="
    )
    assert _digest(target, context, lock) != relocked


def _plain_context_digest(lines: list[tuple[str, str, bytes]]) -> str:
    """The context digest by its definition: ``path NUL mode NUL sha256`` per file, in order."""
    listing = [f"{path}\0{mode}\0{hashlib.sha256(data).hexdigest()}" for path, mode, data in lines]
    return "sha256:" + hashlib.sha256("\n".join(listing).encode()).hexdigest()


def test_the_context_digest_follows_file_links_in_path_order_and_every_rewrite(
    tmp_path: Path,
) -> None:
    context = tmp_path / "context"
    (context / "a").mkdir(parents=True)
    (context / "a-b").mkdir()
    (context / "a" / "b").write_bytes(b"one")
    (context / "a-b" / "c").write_bytes(b"two")
    for file in (context / "a" / "b", context / "a-b" / "c"):
        file.chmod(0o644)
    (context / "linked").symlink_to("a/b")  # a link to a file counts as that file
    (context / "folder").symlink_to("a")  # a link to a folder is not entered
    expected = _plain_context_digest(
        [("a/b", "644", b"one"), ("a-b/c", "644", b"two"), ("linked", "644", b"one")]
    )
    assert context_digest(context) == expected
    assert context_digest(context) == expected  # from the memo beside the context
    assert (tmp_path / CONTEXT_SHA256S).is_file()

    # The same size and modification time, other bytes: read again (its change time moved).
    stat = (context / "a" / "b").stat()
    (context / "a" / "b").write_bytes(b"new")
    os.utime(context / "a" / "b", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert context_digest(context) == _plain_context_digest(
        [("a/b", "644", b"new"), ("a-b/c", "644", b"two"), ("linked", "644", b"new")]
    )
