"""Rebuild: every stage for one runtime — base, render, inputs, build, snapshot, branch.

Each stage reads and writes files under the work directory (``<work>/<runtime>/<arch>/``), so
the same steps can also be run one at a time from the CLI or split across machines.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import log
from .base import BaseRecord, ensure_base
from .branch import BranchResult, push_branch
from .build import BuildRecord, build_target
from .conformance import Report, probe_dir, run_checks
from .engine import require_emulation
from .errors import ConformanceError, SnapshotError
from .incremental import (
    INPUT_LABEL,
    CellInputs,
    cell_inputs,
    snapshot_current,
    unchanged_in_engine,
    write_record,
)
from .inputs import fetch_inputs, fetch_npm, fetch_pip
from .lock import Lock
from .matrix import TEMPLATES_DIR, Matrix, Target
from .render import base_image_name, render_target, write_context
from .snapshot import (
    LAYER_CACHE,
    ArchSnapshot,
    assemble_branch,
    snapshot_target,
    warm_layer_cache,
)


def target_dir(work: Path, target: Target) -> Path:
    return work / target.runtime.id / target.arch.name


def stage_base(target: Target, client: Any, lock: Lock) -> BaseRecord:
    with log.step(f"base {target.runtime.os.id}/{target.arch.name}"):
        record = ensure_base(target, client, lock)
        log.info(f"    {record.name} {record.image_id[:19]} ({record.architecture})")
        return record


def stage_render(
    target: Target, work: Path, lock: Lock, templates_dir: Path = TEMPLATES_DIR
) -> Path:
    with log.step(f"render {target.key}"):
        rendered = render_target(target, templates_dir=templates_dir)
        context = write_context(rendered, target_dir(work, target) / "context")
        fetch_pip(target, lock, context)
        fetch_npm(target, lock, context)
        fetch_inputs(target, lock, context)
        return context


def stage_inputs(target: Target, work: Path, client: Any, lock: Lock) -> CellInputs:
    """Base and render one target, and digest what its image will be made from."""
    require_emulation(target.arch)
    context = stage_render(target, work, lock)  # first: an unlocked input fails before any pull
    base = stage_base(target, client, lock)
    return cell_inputs(target, context, base.image_id, lock)


def build_cell(
    target: Target,
    work: Path,
    client: Any,
    lock: Lock,
    *,
    force: bool = False,
    no_cache: bool = False,
    inputs: CellInputs | None = None,
) -> tuple[BuildRecord, bool]:
    """Build one target unless the engine holds its image from the same inputs; writes
    ``build.json`` and ``inputs.json``. Returns the record and whether the build was skipped.
    ``force`` builds even so; ``no_cache`` also ignores the layer cache (and implies force)."""
    inputs = inputs or stage_inputs(target, work, client, lock)
    folder = target_dir(work, target)
    if not (force or no_cache) and unchanged_in_engine(target, client, folder, inputs.digest):
        log.info(f"{target.key}: inputs unchanged ({inputs.digest[7:19]}), build skipped")
        write_record(folder, inputs, "built")
        return BuildRecord.read(folder), True
    warming = warm_layer_cache(client, base_image_name(target), work / LAYER_CACHE)
    with log.step(f"build {target.key}"):
        record = build_target(
            target,
            folder / "context",
            client,
            str(inputs.parts["base_image_id"]),
            folder / "build.log",
            no_cache=no_cache,
            extra_labels={INPUT_LABEL: inputs.digest},
        )
        record.write(folder)
        write_record(folder, inputs, "built")
        log.info(
            f"    {record.image} {record.image_id[:19]} {record.architecture} "
            f"{log.human_size(record.size)}"
        )
    if warming is not None:
        with log.step(f"compress the base layers of {target.key}"):
            warming.join()
    return record, False


def stage_test(target: Target, work: Path, client: Any, *, reuse: bool = False) -> Report:
    """Lambda's conformance checks on a built image; writes ``test.json``, raises when one fails.

    ``reuse``: an image whose build was skipped keeps the passing report it already has.
    """
    if reuse and (previous := Report.read_passed(target_dir(work, target))) is not None:
        log.info(f"{target.key}: unchanged image passed its checks before, tests skipped")
        return previous
    with log.step(f"test {target.key}"):
        report = run_checks(client, target.image_tag, target.arch, probe_dir(target.runtime))
        report.write(target_dir(work, target))
        for check in report.checks:
            state = "ok  " if check.ok else "FAIL"
            log.info(f"    {state} {check.name}: {check.message}")
        if not report.ok:
            msg = f"{target.key}: {report.summary()}; not snapshotting or publishing it"
            raise ConformanceError(msg, report)
        return report


def stage_build(
    target: Target,
    work: Path,
    client: Any,
    lock: Lock,
    *,
    force: bool = False,
    no_cache: bool = False,
) -> BuildRecord:
    """Base, render and build one target; writes ``build.json`` (skipped when unchanged)."""
    return build_cell(target, work, client, lock, force=force, no_cache=no_cache)[0]


def stage_snapshot(target: Target, work: Path, client: Any, *, force: bool = False) -> ArchSnapshot:
    folder = target_dir(work, target)
    if not force:
        image_id = BuildRecord.read(folder).image_id
        if snapshot_current(folder, image_id):
            log.info(f"{target.key}: snapshot of {image_id[:19]} is current, skipped")
            return ArchSnapshot.read(folder)
    with log.step(f"snapshot {target.key}"):
        snap = snapshot_target(target, client, work)
        packed = sum(layer.compressed_size for layer in snap.layers)
        log.info(f"    {len(snap.layers)} layers, {log.human_size(packed)} as .tar.xz")
        return snap


@dataclass(kw_only=True)
class RebuildSummary:
    runtime: str
    builds: list[BuildRecord] = field(default_factory=list)
    tests: list[Report] = field(default_factory=list)
    snapshots: list[ArchSnapshot] = field(default_factory=list)
    branch_dir: Path | None = None
    branch: BranchResult | None = None
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)  # targets whose inputs were unchanged


def rebuild(
    matrix: Matrix,
    runtime_id: str,
    *,
    work: Path,
    client: Any,
    arches: Sequence[str] = (),
    git_remote: str | None = None,
    force: bool = False,
    no_cache: bool = False,
) -> RebuildSummary:
    started = time.monotonic()
    runtime = matrix.runtime(runtime_id)
    lock = Lock.for_matrix(matrix.path)
    targets = matrix.targets([runtime], arches)
    summary = RebuildSummary(runtime=runtime.id)
    for target in targets:
        record, skipped = build_cell(
            target, work, client, lock, force=force or no_cache, no_cache=no_cache
        )
        summary.builds.append(record)
        if skipped:
            summary.skipped.append(target.key)
        summary.tests.append(stage_test(target, work, client, reuse=skipped))
        summary.snapshots.append(stage_snapshot(target, work, client, force=force or no_cache))
    built = [t.arch.name for t in targets]
    with log.step(f"branch content {runtime.id}"):
        summary.branch_dir = assemble_branch(runtime, work, built)
    if git_remote:
        missing = [a for a in runtime.architectures if a not in built]
        if missing:
            msg = (
                f"{runtime.id}: not pushing a branch without {', '.join(missing)}; "
                "rebuild every architecture, or leave out --git-remote"
            )
            raise SnapshotError(msg)
        with log.step(f"push branch {runtime.id}"):
            summary.branch = push_branch(matrix, runtime.id, summary.branch_dir, git_remote)
    summary.seconds = round(time.monotonic() - started, 1)
    return summary
