"""The cells' stages in order, under each cell's lock::

    prepare (render → fetch inputs → base → input digest) → build → test → snapshot

and the commands that run them (build, base, render --contexts, test, snapshot, lock). A flag
means the same everywhere: ``force`` redoes a cell whose inputs did not change (and its
snapshot); ``no_cache`` also reruns every build step (fresh packages) and implies ``force``.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .. import apt, ledger, log
from ..base import BaseRecord, ensure_base, load_base, locate_base, lock_base_digest
from ..build import build_target, global_args, image_labels
from ..buildkit import engine_builder
from ..conformance import checks_digest, run_checks
from ..engine import DEFAULT_DOCKER_HOST, engine_arch, require_emulation
from ..errors import BaseImageError, ConformanceError, RegistryError, SnapshotError
from ..incremental import (
    INPUT_LABEL,
    build_reason,
    cell_inputs,
    checks_reason,
    engine_image,
    export_cell,
    published_digest,
    registry_digest,
    snapshot_reason,
)
from ..inputs import (
    fetch_inputs,
    fetch_npm,
    fetch_package_managers,
    fetch_pip,
    lock_npm,
    lock_pip,
    lock_url_inputs,
    require_locked,
)
from ..matrix import ARCHES, Arch, ImageBase, RootfsBase, Runtime, Target
from ..oci.registry import RegistryRef
from ..probes import prepare_probe
from ..records import ArchSnapshot, BuildRecord, CellInputs, InputsRecord, Report
from ..render import render_target, write_context
from ..sbom import go_pins
from ..snapshot import assemble_branch, read_licence, snapshot_target, warm_layer_cache
from ..workdir import Cell, UnreadableRecord
from .requests import BuildRequest, Cells
from .run import Run

CellState = Literal["built", "skipped", "unchanged"]


def render_cell(run: Run, target: Target) -> Path:
    """Render the target's build context into its cell; return the context folder."""
    with log.step(f"render {target.key}"):
        rendered = render_target(target, templates_dir=run.matrix.templates_dir)
        return write_context(rendered, run.cell(target).context)


def fetch_cell_inputs(run: Run, target: Target, context: Path) -> None:
    """Put the target's pinned inputs (wheels, npm packages, downloads) into its context."""
    with log.step(f"inputs {target.key}"):
        fetch_pip(target, run.lock, context)
        fetch_npm(target, run.lock, context, run.inputs_cache)
        fetch_package_managers(target, run.lock, context, run.inputs_cache)
        fetch_inputs(target, run.lock, context, run.inputs_cache, environ=run.settings.environ)


def prepare_base(run: Run, target: Target, *, load: bool = True) -> BaseRecord:
    """The target's OS base, made or found; ``load``: also present in the engine (a Debian
    base that is only located costs the engine nothing: see base.locate_base)."""
    key = (target.runtime.os.id, target.arch.name)
    settings = run.settings
    located = run.bases.get(key)
    if located is None:
        with log.step(f"base {target.runtime.os.id}/{target.arch.name}"):
            if isinstance(target.runtime.os.base, ImageBase):
                located = ensure_base(
                    target, run.client, run.lock, cache=settings.cache, epoch=settings.epoch,
                    environ=settings.environ,
                )  # fmt: skip
            else:
                located = locate_base(
                    target, cache=settings.cache, epoch=settings.epoch, environ=settings.environ
                )
            log.info(f"    {located.name} {located.image_id[:19]} ({located.architecture})")
            locked = run.lock.archive_state(target.runtime.os.id, target.arch.name)
            if located.apt_state and locked and locked != located.apt_state:
                log.info(
                    f"    its apt archives moved since {run.lock.path.name} recorded them; "
                    "built from their current state (`lambda-images lock` records it)"
                )
        run.bases[key] = located
    if load and isinstance(target.runtime.os.base, RootfsBase):
        loaded = load_base(target, run.client, located, cache=settings.cache, epoch=settings.epoch)
        run.bases[key] = loaded
        return loaded
    return located


# Dockerfile ARGs naming the OS base for the build machine's architecture and that machine's
# platform: a build stage FROM them runs natively there and cross-compiles (templates/nodejs:
# the client's native addon). BuildKit's own BUILDPLATFORM is not used: the classic builder does
# not set it, and a Dockerfile that declares it for the classic builder gets it empty on BuildKit.
BUILD_BASE_ARG = "BUILD_BASE"

BUILD_PLATFORM_ARG = "BUILD_PLATFORM"


def build_host(run: Run, target: Target) -> Target | None:
    """The target's OS on the engine's own architecture, when its Dockerfile has a stage that
    runs there (a global ``ARG BUILD_BASE``); None otherwise."""
    dockerfile = (run.cell(target).context / "Dockerfile").read_text(encoding="utf-8")
    if BUILD_BASE_ARG not in global_args(dockerfile):
        return None
    return dataclasses.replace(target, arch=ARCHES[engine_arch(run.client)])


def prepare_cell(run: Run, target: Target) -> CellInputs:
    """Render, fetch inputs and make the base (and the build machine's base for a stage that
    runs there); return the digest of what the image is made of.
    Inputs come first: an unlocked input fails before anything is pulled or built."""
    require_emulation(target.arch)
    context = render_cell(run, target)
    fetch_cell_inputs(run, target, context)
    base = prepare_base(run, target, load=False)
    host = build_host(run, target)
    build_base = None if host is None else prepare_base(run, host, load=False).image_id
    return cell_inputs(target, context, base.image_id, run.lock, run.settings, build_base)


def build_image(run: Run, target: Target, inputs: CellInputs, *, no_cache: bool) -> BuildRecord:
    cell = run.cell(target)
    prepare_base(run, target)  # in the engine now: the build starts FROM it
    host = build_host(run, target)
    if host is not None:
        prepare_base(run, host)
    warming = warm_layer_cache(run.client, target.base_image, run.layer_cache, run.settings.epoch)
    build_args = {}
    if host is not None:
        platform = f"linux/{host.arch.docker}"
        build_args = {BUILD_BASE_ARG: host.base_image, BUILD_PLATFORM_ARG: platform}
    with log.step(f"build {target.key}"):
        record = build_target(
            target,
            cell.context,
            run.client,
            str(inputs.parts["base_image_id"]),
            cell.build_log,
            labels={**image_labels(target, run.settings, run.lock), INPUT_LABEL: inputs.digest},
            no_cache=no_cache,
            builder=run.settings.builder,
            network_mode=run.settings.build_network,
            build_args=build_args,
            platform_check=host is None,
        )
        record.write(cell)
        log.info(
            f"    {record.image} {record.image_id[:19]} {record.architecture} "
            f"{log.human_size(record.size)}"
        )
        if run.settings.build_ledger is not None:
            _enter_in_ledger(run, target, inputs, record)
    if warming is not None:
        with log.step(f"compress the base layers of {target.key}"):
            warming.join()
    return record


def _enter_in_ledger(run: Run, target: Target, inputs: CellInputs, record: BuildRecord) -> None:
    """One line in the build ledger (Settings.build_ledger) for the image just built."""
    assert run.settings.build_ledger is not None
    steps = ledger.count_run_steps(run.cell(target).build_log.read_text("utf-8").splitlines())
    version = run.client.version().get("Version", "?")
    entry = ledger.LedgerEntry(
        runtime=target.runtime.id,
        arch=target.arch.name,
        engine=f"{run.settings.docker_host or DEFAULT_DOCKER_HOST} {version}",
        builder=engine_builder(run.client, run.settings.builder),
        image=record.image,
        image_id=record.image_id,
        input_digest=inputs.digest,
        cold=steps.cold,
        run_steps_ran=steps.ran,
        run_steps_cached=steps.cached,
        seconds=record.seconds,
        by=run.settings.build_ledger_by or "lambda-images",
    )
    ledger.append(run.settings.build_ledger, entry)


def test_cell(run: Run, target: Target, *, reuse: bool = False) -> Report:
    """Lambda's conformance checks on a built image; writes ``test.json``, raises when one
    fails. ``reuse``: a passing report of this very image by the current checks is kept
    (incremental.checks_reason)."""
    cell = run.cell(target)
    record = BuildRecord.read(cell)
    previous = Report.read(cell)
    if record is not None:
        why = checks_reason(record.image_id, previous, checks_digest(), force=not reuse)
        if why is None and previous is not None:
            log.info(f"{target.key}: {record.image_id[:19]} passed these checks before, skipped")
            return previous
        if reuse:
            log.info(f"{target.key}: checking it: {why}")
    with (
        log.step(f"test {target.key}"),
        tempfile.TemporaryDirectory(prefix="lambda-probe-") as tmp,
    ):
        probe = prepare_probe(
            target.runtime, target.arch, Path(tmp, "probe"), lock=run.lock,
            cache=run.inputs_cache, environ=run.settings.environ,
        )  # fmt: skip
        report = run_checks(
            run.client, target.image_tag, target.arch, probe.code, handler=probe.handler,
            runtime_api_host=run.settings.runtime_api_host,
        )  # fmt: skip
        report.write(cell)
        for check in report.checks:
            state = "ok  " if check.ok else "FAIL"
            log.info(f"    {state} {check.name}: {check.message}")
        if not report.ok:
            msg = f"{target.key}: {report.summary()}; not snapshotting or publishing it"
            raise ConformanceError(msg, report)
        return report


def snapshot_cell(run: Run, target: Target, *, force: bool = False) -> ArchSnapshot:
    cell = run.cell(target)
    record = BuildRecord.read(cell)
    if record is None:
        raise SnapshotError(f"{target.key}: no build record in {cell.folder}; build it first")
    snap = ArchSnapshot.read(cell)
    missing = snap.missing_layers(cell) if snap is not None else []
    why = snapshot_reason(record.image_id, snap, missing, force=force)
    if why is None and snap is not None:
        log.info(f"{target.key}: snapshot of {record.image_id[:19]} is current, skipped")
        return snap
    log.info(f"{target.key}: snapshotting it: {why}")
    with log.step(f"snapshot {target.key}"):
        snap = snapshot_target(target, run.client, run.work, run.settings.epoch, run.layer_cache)
        packed = sum(layer.compressed_size for layer in snap.layers)
        log.info(f"    {len(snap.layers)} layers, {log.human_size(packed)} as .tar.xz")
        return snap


def build_cell(
    run: Run,
    target: Target,
    inputs: CellInputs,
    *,
    force: bool = False,
    no_cache: bool = False,
) -> tuple[BuildRecord, bool]:
    """Build a prepared cell unless the engine holds its image from the same inputs; writes
    ``build.json`` and ``inputs.json``. Returns the record and whether the build was skipped."""
    cell = run.cell(target)
    record = BuildRecord.read(cell)
    image = engine_image(target, run.client)
    why = build_reason(inputs.digest, record, image, force=force or no_cache)
    if why is None and record is not None:
        log.info(f"{target.key}: inputs unchanged ({inputs.digest[7:19]}), build skipped")
    else:
        log.info(f"{target.key}: building it: {why}")
        record = build_image(run, target, inputs, no_cache=no_cache)
    _record_inputs(cell, inputs)
    return record, why is None


def _record_inputs(cell: Cell, inputs: CellInputs) -> None:
    """``inputs.json`` of a cell built from ``inputs`` (not rewritten when it says so already)."""
    record = InputsRecord.of(inputs, "built")
    if InputsRecord.read(cell) != record:
        record.write(cell)


def unchanged_cell(
    run: Run, target: Target, inputs: CellInputs, *, snapshot: bool
) -> CellResult | None:
    """The cell's result when nothing is left to do: its image in the engine is the one its
    build record names and was built from ``inputs``, its report passed on that image with
    the current checks and (``snapshot``) its snapshot is of that image with every layer file.
    One inspect of the image and the cell's records decide it (incremental's ``*_reason``);
    one log line says so. None when a stage has work."""
    cell = run.cell(target)
    try:  # an unreadable record is the stage's to warn about and redo: not read twice here
        record = BuildRecord.read_strict(cell)
        report = Report.read_strict(cell)
        snap = ArchSnapshot.read_strict(cell) if snapshot else None
    except UnreadableRecord:
        return None
    if record is None or build_reason(
        inputs.digest, record, engine_image(target, run.client), force=False
    ):
        return None
    if checks_reason(record.image_id, report, checks_digest(), force=False):
        return None
    if snapshot:
        missing = snap.missing_layers(cell) if snap is not None else []
        if snapshot_reason(record.image_id, snap, missing, force=False):
            return None
    _record_inputs(cell, inputs)
    done = "its checks passed on it" + (", its snapshot is current" if snapshot else "")
    log.info(
        f"{target.key}: unchanged (inputs {inputs.digest[7:19]}, image {record.image_id[7:19]}; "
        f"{done}): nothing to do"
    )
    return CellResult(
        target=target, state="skipped", inputs=inputs, build=record, report=report, snapshot=snap
    )


@dataclass(kw_only=True)
class CellResult:
    target: Target
    state: CellState  # built; skipped (same inputs as the image in the engine); unchanged
    inputs: CellInputs
    build: BuildRecord | None = None  # None when unchanged from the published branch
    report: Report | None = None
    snapshot: ArchSnapshot | None = None

    def as_json(self) -> dict[str, Any]:
        b, s = self.build, self.snapshot
        return {
            "runtime": self.target.runtime.id,
            "arch": self.target.arch.name,
            "state": self.state,
            "input_digest": self.inputs.digest,
            "image": self.target.image_tag,
            "image_id": b.image_id if b else None,
            "architecture": b.architecture if b else self.target.arch.docker,
            "size": b.size if b else None,
            "build_seconds": b.seconds if b else None,
            "conformance": None
            if self.report is None
            else {"ok": self.report.ok, "checks": [c.name for c in self.report.checks]},
            "layers": [layer.file for layer in s.layers] if s else None,
            "snapshot_bytes": sum(layer.compressed_size for layer in s.layers) if s else None,
        }


def locked_targets(
    run: Run, runtimes: Sequence[Runtime], arches: Sequence[str] = ()
) -> list[Target]:
    """The cells of ``runtimes`` on ``arches``, each checked to have its inputs locked before
    any cell is written: an unlocked input stops the command before it builds anything."""
    targets = run.matrix.targets(runtimes, arches)
    for target in targets:
        require_locked(target, run.lock)
    return targets


def _is_published(
    run: Run,
    target: Target,
    inputs: CellInputs,
    remote: str | None,
    registry: RegistryRef | None,
) -> bool:
    """True when every place asked about records this cell's input digest as published.

    A registry that cannot be read (a CI cell holds no registry credentials) answers nothing:
    with a branch, whose push is the last step of a publish and so follows the registry's,
    the branch decides; alone, the cell is built. Either way a warning says why."""
    if remote is None and registry is None:
        return False
    if (
        remote is not None
        and published_digest(remote, target, run.settings.environ) != inputs.digest
    ):
        return False
    if registry is not None:
        try:
            client = run.registry(registry)
            try:
                return registry_digest(client, registry, target) == inputs.digest
            finally:
                client.session.close()
        except RegistryError as exc:
            then = "its branch decides" if remote is not None else "building it"
            log.warning(f"{target.key}: {registry} cannot be read ({exc}); {then}")
            return remote is not None
    return True


def run_cell(
    run: Run,
    target: Target,
    *,
    force: bool = False,
    no_cache: bool = False,
    snapshot: bool = False,
    published: str | None = None,
    published_registry: RegistryRef | None = None,
) -> CellResult:
    """Every stage of one cell, under its lock: prepare, build (unless unchanged), test,
    and snapshot when asked. ``published`` (a git remote) and ``published_registry``: where the
    cell counts as ``unchanged`` (nothing built at all) when what is published there records
    the same input digest — on the runtime's branch, in the ``<tag>-<arch>`` image's config,
    and when both are given, in both."""
    force = force or no_cache
    cell = run.cell(target)
    with cell.locked():
        inputs = prepare_cell(run, target)
        if not force and _is_published(run, target, inputs, published, published_registry):
            log.info(f"{target.key}: same inputs as published ({inputs.digest[7:19]}), skipped")
            InputsRecord.of(inputs, "unchanged").write(cell)
            return CellResult(target=target, state="unchanged", inputs=inputs)
        if not force and (done := unchanged_cell(run, target, inputs, snapshot=snapshot)):
            return done
        record, skipped = build_cell(run, target, inputs, force=force, no_cache=no_cache)
        # A cell is tested before it is handed on: a failing image is never snapshotted.
        report = test_cell(run, target, reuse=not force)
        snap = snapshot_cell(run, target, force=force) if snapshot else None
        return CellResult(
            target=target,
            state="skipped" if skipped else "built",
            inputs=inputs,
            build=record,
            report=report,
            snapshot=snap,
        )


@dataclass(kw_only=True)
class BuildSummary:
    cells: list[CellResult] = field(default_factory=list)

    def as_json(self) -> list[dict[str, Any]]:
        return [c.as_json() for c in self.cells]


def build(run: Run, request: BuildRequest) -> BuildSummary:
    """Build and test every cell; with ``out``, also snapshot each and copy its records and
    layers to ``out`` (what a CI cell hands on to the publish job)."""
    summary = BuildSummary()
    out = request.out
    for target in locked_targets(run, request.cells.runtimes, request.cells.arches):
        result = run_cell(
            run, target, force=request.force, no_cache=request.no_cache,
            snapshot=out is not None, published=request.published,
            published_registry=request.published_registry,
        )  # fmt: skip
        if out is not None:
            export_cell(run.cell(target), out)
        summary.cells.append(result)
    return summary


def branch_content(
    run: Run,
    runtime: Runtime,
    arches: Sequence[str],
    *,
    snapshots: Sequence[ArchSnapshot] | None = None,
    sboms: dict[str, bytes] | None = None,
    history: Sequence[str] = (),
    remote: str | None = None,
) -> Path:
    """Lay out the runtime's branch folder from its snapshots (with their SBOMs, made here when
    not given; its README's clone command naming ``remote``, the git remote it is pushed to);
    the one place a command does so, once per runtime."""
    with run.work.runtime_locked(runtime.id), log.step(f"branch content {runtime.id}"):
        return assemble_branch(
            runtime, run.work, arches, snapshots=snapshots, epoch=run.settings.epoch,
            pins=go_pins(run.lock), sboms=sboms, history=history, remote=remote,
            licence=read_licence(run.matrix.templates_dir.parent / "LICENSE"),
        )  # fmt: skip


@dataclass(kw_only=True)
class SnapshotSummary:
    """Each runtime's branch content folder, and the snapshot of each of its cells."""

    branches: dict[str, Path] = field(default_factory=dict)
    snapshots: list[ArchSnapshot] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "branches": {rt: str(folder) for rt, folder in self.branches.items()},
            "snapshots": [snap.to_json() for snap in self.snapshots],
        }


def snapshot_runtimes(run: Run, cells: Cells) -> SnapshotSummary:
    """Snapshot built cells and lay out each runtime's branch content."""
    summary = SnapshotSummary()
    for target in run.matrix.targets(cells.runtimes, cells.arches):  # before anything is written
        cell = run.cell(target)
        try:
            if BuildRecord.read_strict(cell) is None:
                raise SnapshotError(
                    f"{target.key}: no build record in {cell.folder}; build it first"
                )
        except UnreadableRecord as exc:
            raise SnapshotError(f"{exc}; build {target.key} again") from None
    for rt in cells.runtimes:
        targets = run.matrix.targets([rt], cells.arches)
        for target in targets:
            with run.cell(target).locked():
                summary.snapshots.append(snapshot_cell(run, target))
        summary.branches[rt.id] = branch_content(run, rt, [t.arch.name for t in targets])
    return summary


@dataclass(kw_only=True)
class ConformanceSummary:
    reports: list[Report] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # the cells with a failing check

    def as_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.reports]

    def raise_for_failure(self) -> None:
        if self.failed:
            raise ConformanceError(f"conformance checks failed for {', '.join(self.failed)}")


def test_targets(run: Run, cells: Cells) -> ConformanceSummary:
    """Conformance checks on built images: every cell's report, and the cells that failed."""
    summary = ConformanceSummary()
    for target in run.matrix.targets(cells.runtimes, cells.arches):
        try:
            summary.reports.append(test_cell(run, target))
        except ConformanceError as exc:
            summary.reports.append(exc.report)
            summary.failed.append(target.key)
    return summary


def make_bases(run: Run, cells: Cells) -> list[BaseRecord]:
    """Each OS base the targets need, once per OS and architecture."""
    done: dict[tuple[str, str], BaseRecord] = {}
    for target in run.matrix.targets(cells.runtimes, cells.arches):
        key = (target.runtime.os.id, target.arch.name)
        if key not in done:
            done[key] = prepare_base(run, target)
    return list(done.values())


def render_contexts(run: Run, cells: Cells) -> list[Path]:
    """Build contexts with their inputs, as a build would see them; their Dockerfiles."""
    paths = []
    for target in locked_targets(run, cells.runtimes, cells.arches):
        with run.cell(target).locked():
            context = render_cell(run, target)
            fetch_cell_inputs(run, target, context)
        paths.append(context / "Dockerfile")
    return paths


@dataclass(kw_only=True)
class LockSummary:
    path: Path
    unlocked: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "unlocked": self.unlocked}


def lock_inputs(run: Run, runtimes: Sequence[Runtime]) -> LockSummary:
    """Pin every downloadable input of ``runtimes`` by sha256 in the lock file (network), and
    record the current state of their Debian archives. Inputs that cannot be downloaded from
    here stay unlocked (null), and are named."""
    lockfile = run.lock
    for os_id in {rt.os.id for rt in runtimes}:
        lockfile.archives.pop(os_id, None)  # read afresh, once per OS and arch
    unlocked: list[str] = []
    tried: set[str] = set()
    for rt in runtimes:
        with log.step(f"lock {rt.id}"):
            for arch in rt.architectures if rt.install.pip else ():
                lockfile.pip.setdefault(rt.id, {})[arch] = lock_pip(rt, arch)
            if rt.install.npm:
                lockfile.npm[rt.id] = lock_npm(rt, run.inputs_cache)
            names = lock_url_inputs(
                rt, lockfile, run.inputs_cache, tried, environ=run.settings.environ
            )
            unlocked += [f"{rt.id}: {name}" for name in names]
            if isinstance(rt.os.base, RootfsBase):
                for arch in rt.architectures:
                    if arch in lockfile.archives.get(rt.os.id, {}):
                        continue
                    try:
                        record = _archive_record(rt.os.base, ARCHES[arch])
                    except BaseImageError as exc:
                        log.warning(f"{exc}; its state is not recorded")
                        unlocked.append(f"{rt.os.id}: archive state for {arch}")
                        continue
                    lockfile.archives.setdefault(rt.os.id, {})[arch] = record
            if isinstance(rt.os.base, ImageBase):
                for arch in rt.architectures:
                    digests = lockfile.bases.setdefault(rt.os.id, {})
                    if not digests.get(arch):
                        digests[arch] = lock_base_digest(rt.os.base, ARCHES[arch])
                    if not digests[arch]:
                        unlocked.append(f"{rt.os.id}: base image for {arch}")
    lockfile.save()
    return LockSummary(path=lockfile.path, unlocked=sorted(set(unlocked)))


def _archive_record(base: RootfsBase, arch: Arch) -> dict[str, Any]:
    states = apt.read_states(base, arch.debian)
    return {
        "state": apt.states_digest(states),
        "archives": {s.line: {"inrelease": s.release_sha256, "packages": s.digest} for s in states},
    }
