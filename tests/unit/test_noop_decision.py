"""What an unchanged cell skips, decided from its records alone (incremental's ``*_reason``):
each change that must redo a stage does, and nothing else does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import conformance
from pipeline.base import ROOTFS_DIGEST, rootfs_digest
from pipeline.branch import content_digest
from pipeline.digests import sha256_file
from pipeline.incremental import EngineImage, build_reason, checks_reason, snapshot_reason
from pipeline.lock import Lock
from pipeline.matrix import Matrix
from pipeline.records import ArchSnapshot, BuildRecord, Check, ImageConfig, Layer, Report

DIGEST = "sha256:" + "a" * 64
IMAGE_ID = "sha256:" + "b" * 64
OTHER_ID = "sha256:" + "c" * 64
LAYER_SHA = "d" * 64


def _record(image_id: str = IMAGE_ID) -> BuildRecord:
    return BuildRecord(
        runtime="provided.debian12", arch="x86_64", image="t/provided.debian12:x86_64",
        image_id=image_id, architecture="amd64", size=1, base_image_id=OTHER_ID,
        context_digest="x", seconds=1.0, log_tail=[],
    )  # fmt: skip


def _report(image_id: str = IMAGE_ID, *, ok: bool = True, checks: str | None = None) -> Report:
    return Report(
        image="t/provided.debian12:x86_64", arch="x86_64",
        checks=(Check(name="size", ok=ok, message="m"),), seconds=1.0, image_id=image_id,
        checks_digest=conformance.checks_digest() if checks is None else checks,
    )  # fmt: skip


def _snapshot(image_id: str = IMAGE_ID) -> ArchSnapshot:
    layer = Layer(file=f"{LAYER_SHA}.tar.xz", sha256=LAYER_SHA, diff_id=DIGEST, size=2,
                  compressed_size=1)  # fmt: skip
    config = ImageConfig(env=[], entrypoint=None, cmd=None, working_dir="", user="", labels={})
    return ArchSnapshot(
        runtime="provided.debian12", arch="x86_64", docker_arch="amd64", image_id=image_id,
        layers=[layer], config=config,
    )  # fmt: skip


def test_an_unchanged_cell_has_no_reason_to_build_test_or_snapshot() -> None:
    engine = EngineImage(image_id=IMAGE_ID, input_digest=DIGEST)
    assert build_reason(DIGEST, _record(), engine, force=False) is None
    assert checks_reason(IMAGE_ID, _report(), conformance.checks_digest(), force=False) is None
    assert snapshot_reason(IMAGE_ID, _snapshot(), [], force=False) is None


@pytest.mark.parametrize(
    ("record", "engine", "reason"),
    [
        (None, EngineImage(image_id=IMAGE_ID, input_digest=DIGEST), "no build record"),
        (_record(), None, "its image is not in the engine"),
        (
            _record(),
            EngineImage(image_id=IMAGE_ID, input_digest="sha256:" + "e" * 64),
            "inputs changed (eeeeeeeeeeee → aaaaaaaaaaaa)",
        ),
        (
            _record(),
            EngineImage(image_id=IMAGE_ID, input_digest=None),
            "inputs changed (none → aaaaaaaaaaaa)",
        ),
        (
            _record(OTHER_ID),
            EngineImage(image_id=IMAGE_ID, input_digest=DIGEST),
            "the engine's image sha256:bbbbbbbbbbbb is not the one recorded",
        ),
    ],
)
def test_a_changed_image_is_built(
    record: BuildRecord | None, engine: EngineImage | None, reason: str
) -> None:
    assert build_reason(DIGEST, record, engine, force=False) == reason


def test_force_redoes_every_stage() -> None:
    engine = EngineImage(image_id=IMAGE_ID, input_digest=DIGEST)
    forced = "forced (--force or --no-cache)"
    assert build_reason(DIGEST, _record(), engine, force=True) == forced
    assert checks_reason(IMAGE_ID, _report(), conformance.checks_digest(), force=True) == forced
    assert snapshot_reason(IMAGE_ID, _snapshot(), [], force=True) == forced


@pytest.mark.parametrize(
    ("report", "reason"),
    [
        (None, "no conformance report"),
        (_report(OTHER_ID), "its report is of another image"),
        (_report(ok=False), "its report has failed checks"),
        (_report(checks="sha256:" + "0" * 64), "the checks changed since its report"),
    ],
)
def test_checks_run_again_unless_this_image_passed_these_checks(
    report: Report | None, reason: str
) -> None:
    assert checks_reason(IMAGE_ID, report, conformance.checks_digest(), force=False) == reason


def test_a_report_from_before_image_ids_were_recorded_holds_for_no_image() -> None:
    old = _report().to_json()
    del old["image_id"], old["checks_digest"]
    report = Report.from_json(json.loads(json.dumps(old)))
    assert (report.image_id, report.checks_digest) == ("", "")
    why = checks_reason(IMAGE_ID, report, conformance.checks_digest(), force=False)
    assert why == "its report is of another image"


def test_a_new_check_or_version_changes_the_checks_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = conformance.checks_digest()
    monkeypatch.setattr(conformance, "CHECKS_VERSION", conformance.CHECKS_VERSION + 1)
    bumped = conformance.checks_digest()
    monkeypatch.setattr(conformance, "CHECKS_VERSION", conformance.CHECKS_VERSION - 1)
    extra = conformance.Rule(name="new", verifies="more", check=conformance.CHECKS[0].check)
    monkeypatch.setattr(conformance, "CHECKS", (*conformance.CHECKS, extra))
    added = conformance.checks_digest()
    assert len({now, bumped, added}) == 3
    assert checks_reason(IMAGE_ID, _report(checks=now), added, force=False) == (
        "the checks changed since its report"
    )


@pytest.mark.parametrize(
    ("snapshot", "missing", "reason"),
    [
        (None, [], "no snapshot"),
        (_snapshot(OTHER_ID), [], "its snapshot is of another image"),
        (_snapshot(), [f"{LAYER_SHA}.tar.xz"], "1 layer file(s) of its snapshot are missing"),
    ],
)
def test_a_snapshot_is_made_again_unless_it_is_of_this_image_and_whole(
    snapshot: ArchSnapshot | None, missing: list[str], reason: str
) -> None:
    assert snapshot_reason(IMAGE_ID, snapshot, missing, force=False) == reason


def test_the_rootfs_digest_is_read_once_and_kept(tmp_path: Path) -> None:
    (tmp_path / "rootfs.tar").write_bytes(b"root" * 1000)
    expected = sha256_file(tmp_path / "rootfs.tar")
    assert rootfs_digest(tmp_path) == expected
    assert (tmp_path / ROOTFS_DIGEST).read_text() == expected + "\n"
    (tmp_path / "rootfs.tar").write_bytes(b"other")  # a cache folder never changes: kept
    assert rootfs_digest(tmp_path) == expected
    (tmp_path / ROOTFS_DIGEST).write_text("damaged\n")
    assert rootfs_digest(tmp_path) == sha256_file(tmp_path / "rootfs.tar")


def test_the_branch_content_digest_changes_with_what_the_push_would_send(tmp_path: Path) -> None:
    (tmp_path / "x86_64").mkdir()
    (tmp_path / "x86_64" / "Dockerfile.provided.debian12").write_text("FROM scratch\n")
    (tmp_path / "x86_64" / f"{LAYER_SHA}.tar.xz").write_bytes(b"layer")
    args = {"epoch": 1, "remote": "file:///r.git", "message": "Update source"}
    one = content_digest(tmp_path, **args)  # type: ignore[arg-type]
    assert content_digest(tmp_path, **args) == one  # type: ignore[arg-type]
    for change in ({"epoch": 2}, {"remote": "file:///s.git"}, {"message": "other"}):
        assert content_digest(tmp_path, **{**args, **change}) != one  # type: ignore[arg-type]
    (tmp_path / "x86_64" / "Dockerfile.provided.debian12").write_text("FROM scratch\nLABEL a=b\n")
    assert content_digest(tmp_path, **args) != one  # type: ignore[arg-type]


def test_a_lock_file_is_validated_once_per_content(tmp_path: Path) -> None:
    lock = tmp_path / "runtimes.lock.json"
    lock.write_text(json.dumps({"version": 1}))
    checked = tmp_path / "checked"
    Lock.load(lock, checked=checked)
    marks = list(checked.iterdir())
    assert len(marks) == 1
    Lock.load(lock, checked=checked)
    assert list(checked.iterdir()) == marks
    lock.write_text(json.dumps({"version": "one"}))  # new content: validated, and refused
    with pytest.raises(Exception, match="version"):
        Lock.load(lock, checked=checked)
    assert list(checked.iterdir()) == marks


def test_locked_wheels_are_installed_once_and_again_when_the_tree_was_touched(
    matrix: Matrix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip runs only when the requirements or its arguments changed, or the installed tree
    was written to since (no pip here: its run is recorded and stands in a file)."""
    from pipeline import inputs

    runs: list[list[str]] = []

    def fake_pip(argv: list[str], what: str) -> None:
        runs.append(argv)
        dest = Path(next(a for a in argv if a.startswith("--target=")).removeprefix("--target="))
        (dest / "awslambdaric").mkdir(parents=True)
        (dest / "awslambdaric" / "__init__.py").write_text("installed\n")

    monkeypatch.setattr(inputs, "_run_pip", fake_pip)
    target = next(
        t
        for t in matrix.targets([matrix.runtime("python3.11.debian12")])
        if t.arch.name == "x86_64"
    )
    lock = Lock.for_matrix(matrix.path)
    context = tmp_path / "cell" / "context"
    context.mkdir(parents=True)
    inputs.fetch_pip(target, lock, context)
    inputs.fetch_pip(target, lock, context)
    assert len(runs) == 1
    assert (tmp_path / "cell" / "requirements.lock.txt").read_text() == "".join(
        f.requirement + "\n" for f in lock.pip_files("python3.11.debian12", "x86_64")
    )
    (context / "runtime" / "awslambdaric" / "__init__.py").write_text("edited\n")
    inputs.fetch_pip(target, lock, context)
    assert len(runs) == 2
    assert (context / "runtime" / "awslambdaric" / "__init__.py").read_text() == "installed\n"
