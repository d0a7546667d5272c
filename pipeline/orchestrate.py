"""The orchestrator: which stages run, in which order, for every command that runs more than one.

``build``, ``rebuild``, ``lock``, ``base``, ``snapshot``, ``branch``, ``publish``, ``outdated``
and ``refresh`` all come here; cli.py only parses options, calls one of these functions and
prints what it returns. A cell (runtime and architecture) goes through the stages under its
lock::

    prepare (render → fetch inputs → base → input digest) → build → test → snapshot

and a flag means the same everywhere: ``force`` redoes a cell whose inputs did not change (and
its snapshot); ``no_cache`` also reruns every build step (fresh packages) and implies ``force``.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import apt, log
from .base import BaseRecord, ensure_base, lock_base_digest
from .branch import BranchResult, push_branch
from .build import build_target, global_args, image_labels
from .conformance import print_report, run_checks
from .engine import connect, engine_arch, require_emulation
from .errors import (
    BaseImageError,
    ConformanceError,
    LambdaImagesError,
    PublishError,
    SnapshotError,
)
from .incremental import (
    INPUT_LABEL,
    cell_inputs,
    export_cell,
    published_digest,
    unchanged_in_engine,
)
from .inputs import (
    fetch_inputs,
    fetch_npm,
    fetch_pip,
    lock_npm,
    lock_pip,
    lock_url_inputs,
    require_locked,
)
from .lock import Lock
from .matrix import ARCHES, Arch, ImageBase, Matrix, RootfsBase, Runtime, Target, load_matrix
from .oci.credentials import resolve_credentials
from .oci.registry import Registry, RegistryRef
from .outdated import ImageReport, OutdatedReport, check_published, check_targets
from .probes import prepare_probe
from .publish import PublishReport, check_report_path, failure_reason, publish
from .records import ArchSnapshot, BuildRecord, CellInputs, InputsRecord, Report
from .render import render_target, write_context
from .sbom import go_pins
from .settings import Settings
from .snapshot import assemble_branch, require_snapshot, snapshot_target, warm_layer_cache
from .workdir import Cell, UnreadableRecord, WorkDir, write_json

CellState = Literal["built", "skipped", "unchanged"]


@dataclass(kw_only=True)
class Run:
    """What every stage of one command shares: settings, matrix, lock, work folder, engine."""

    settings: Settings
    matrix: Matrix
    lock: Lock
    work: WorkDir
    _client: Any = None

    @classmethod
    def open(cls, settings: Settings) -> Run:
        matrix = load_matrix(settings.matrix, namespace=settings.namespace)
        return cls(
            settings=settings,
            matrix=matrix,
            lock=Lock.for_matrix(matrix.path),
            work=WorkDir(settings.work),
        )

    @property
    def client(self) -> Any:
        """The Docker Engine, connected on first use (commands that need none never ask)."""
        if self._client is None:
            self._client = connect(self.settings.docker_host)
        return self._client

    @property
    def inputs_cache(self) -> Path:
        return self.settings.cache / "inputs"

    @property
    def layer_cache(self) -> Path:
        """Compressed layers by diff ID, for every work directory (snapshot.compress_layer)."""
        return self.settings.cache / "layers"

    def select(self, ids: Sequence[str], *, include_deprecated: bool = False) -> list[Runtime]:
        return self.matrix.select(
            ids, include_deprecated=include_deprecated, today=self.settings.today
        )

    def cell(self, target: Target) -> Cell:
        return self.work.cell(target.runtime.id, target.arch.name)


# --- one cell ------------------------------------------------------------------------------


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
        fetch_inputs(target, run.lock, context, run.inputs_cache)


def prepare_base(run: Run, target: Target) -> BaseRecord:
    with log.step(f"base {target.runtime.os.id}/{target.arch.name}"):
        record = ensure_base(
            target, run.client, run.lock, cache=run.settings.cache, epoch=run.settings.epoch
        )
        log.info(f"    {record.name} {record.image_id[:19]} ({record.architecture})")
        locked = run.lock.archive_state(target.runtime.os.id, target.arch.name)
        if record.apt_state and locked and locked != record.apt_state:
            log.info(
                f"    its apt archives moved since {run.lock.path.name} recorded them; "
                "built from their current state (`lambda-images lock` records it)"
            )
        return record


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
    base = prepare_base(run, target)
    host = build_host(run, target)
    build_base = None if host is None else prepare_base(run, host).image_id
    return cell_inputs(target, context, base.image_id, run.lock, run.settings, build_base)


def build_image(run: Run, target: Target, inputs: CellInputs, *, no_cache: bool) -> BuildRecord:
    cell = run.cell(target)
    warming = warm_layer_cache(run.client, target.base_image, run.layer_cache, run.settings.epoch)
    host = build_host(run, target)
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
            labels={**image_labels(target, run.settings), INPUT_LABEL: inputs.digest},
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
    if warming is not None:
        with log.step(f"compress the base layers of {target.key}"):
            warming.join()
    return record


def test_cell(run: Run, target: Target, *, reuse: bool = False) -> Report:
    """Lambda's conformance checks on a built image; writes ``test.json``, raises when one
    fails. ``reuse``: an image whose build was skipped keeps the passing report it has."""
    cell = run.cell(target)
    if reuse and (previous := Report.read(cell)) is not None and previous.ok:
        log.info(f"{target.key}: unchanged image passed its checks before, tests skipped")
        return previous
    with (
        log.step(f"test {target.key}"),
        tempfile.TemporaryDirectory(prefix="lambda-probe-") as tmp,
    ):
        probe = prepare_probe(
            target.runtime, target.arch, Path(tmp, "probe"), lock=run.lock, cache=run.inputs_cache
        )
        report = run_checks(
            run.client, target.image_tag, target.arch, probe.code, handler=probe.handler
        )
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
    if not force and (snap := ArchSnapshot.read(cell)) and snap.is_current(cell, record.image_id):
        log.info(f"{target.key}: snapshot of {record.image_id[:19]} is current, skipped")
        return snap
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
    skipped = (
        not (force or no_cache)
        and record is not None
        and unchanged_in_engine(target, run.client, cell, inputs.digest)
    )
    if skipped and record is not None:
        log.info(f"{target.key}: inputs unchanged ({inputs.digest[7:19]}), build skipped")
    else:
        record = build_image(run, target, inputs, no_cache=no_cache)
    InputsRecord.of(inputs, "built").write(cell)
    return record, skipped


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

    def line(self) -> str:
        b = self.build
        image_id = b.image_id if b else "-"
        return f"{self.target.image_tag}\t{image_id}\t{self.target.arch.docker}\t{self.state}"


def locked_targets(
    run: Run, runtimes: Sequence[Runtime], arches: Sequence[str] = ()
) -> list[Target]:
    """The cells of ``runtimes`` on ``arches``, each checked to have its inputs locked before
    any cell is written: an unlocked input stops the command before it builds anything."""
    targets = run.matrix.targets(runtimes, arches)
    for target in targets:
        require_locked(target, run.lock)
    return targets


def run_cell(
    run: Run,
    target: Target,
    *,
    force: bool = False,
    no_cache: bool = False,
    snapshot: bool = False,
    published: str | None = None,
) -> CellResult:
    """Every stage of one cell, under its lock: prepare, build (unless unchanged), test,
    and snapshot when asked. ``published``: a git remote whose branch, when it records the
    same input digest, makes the cell ``unchanged`` (nothing built at all)."""
    force = force or no_cache
    cell = run.cell(target)
    with cell.locked():
        inputs = prepare_cell(run, target)
        if published and not force and published_digest(published, target) == inputs.digest:
            log.info(f"{target.key}: same inputs as published ({inputs.digest[7:19]}), skipped")
            InputsRecord.of(inputs, "unchanged").write(cell)
            return CellResult(target=target, state="unchanged", inputs=inputs)
        record, skipped = build_cell(run, target, inputs, force=force, no_cache=no_cache)
        # A cell is tested before it is handed on: a failing image is never snapshotted.
        report = test_cell(run, target, reuse=skipped)
        snap = snapshot_cell(run, target, force=force) if snapshot else None
        return CellResult(
            target=target,
            state="skipped" if skipped else "built",
            inputs=inputs,
            build=record,
            report=report,
            snapshot=snap,
        )


# --- commands ------------------------------------------------------------------------------


@dataclass(kw_only=True)
class BuildSummary:
    cells: list[CellResult] = field(default_factory=list)

    def as_json(self) -> list[dict[str, Any]]:
        return [c.as_json() for c in self.cells]

    def show(self) -> list[str]:
        """One tab-separated line per cell: image, image id, architecture, state."""
        return [c.line() for c in self.cells]


def build(
    run: Run,
    runtimes: Sequence[Runtime],
    arches: Sequence[str] = (),
    *,
    force: bool = False,
    no_cache: bool = False,
    out: Path | None = None,
    published: str | None = None,
) -> BuildSummary:
    """Build and test every cell; with ``out``, also snapshot each and copy its records and
    layers to ``out`` (what a CI cell hands on to the publish job)."""
    summary = BuildSummary()
    targets = locked_targets(run, runtimes, arches)
    for target in targets:
        result = run_cell(
            run, target, force=force, no_cache=no_cache, snapshot=out is not None,
            published=published,
        )  # fmt: skip
        if out is not None:
            export_cell(run.cell(target), out)
        summary.cells.append(result)
    return summary


@dataclass(kw_only=True)
class RebuildSummary:
    runtime: str
    cells: list[CellResult] = field(default_factory=list)
    branch_dir: Path | None = None
    branch: BranchResult | None = None
    publish: PublishReport | None = None
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "seconds": self.seconds,
            "skipped": [c.target.key for c in self.cells if c.state == "skipped"],
            "images": [c.as_json() for c in self.cells],
            "branch_dir": str(self.branch_dir),
            "branch": None
            if self.branch is None
            else {
                "remote": self.branch.remote,
                "commit": self.branch.commit,
                "pushed": self.branch.pushed,
            },
            "publish": None if self.publish is None else self.publish.as_json(),
        }

    def show(self) -> None:
        from rich.table import Table

        table = Table(title=f"{self.runtime} in {self.seconds:.0f}s", box=None, pad_edge=False)
        for column in ("image", "arch", "image id", "size", "checks", "snapshot", "build"):
            table.add_column(column)
        for c in self.cells:
            b, r, s = c.build, c.report, c.snapshot
            if b is None or r is None or s is None:
                continue
            table.add_row(
                b.image,
                b.architecture,
                b.image_id[:19],
                log.human_size(b.size),
                f"{len(r.checks)} passed",
                f"{len(s.layers)} layers, "
                f"{log.human_size(sum(layer.compressed_size for layer in s.layers))}",
                f"{b.seconds:.0f}s",
            )
        log.console.print(table)
        log.info(f"branch content: {self.branch_dir}")
        if self.branch:
            state = "pushed" if self.branch.pushed else "unchanged, not pushed"
            where = f"{self.branch.remote} {self.branch.commit[:12]}"
            log.info(f"branch {self.runtime} → {where} ({state})")
        if self.publish:
            self.publish.show()


def rebuild(
    run: Run,
    runtime_id: str,
    arches: Sequence[str] = (),
    *,
    force: bool = False,
    no_cache: bool = False,
    git_remote: str | None = None,
    registry: str | None = None,
) -> RebuildSummary:
    """Every stage for one runtime: its cells (built, tested, snapshotted), its branch content,
    then the branch pushed to ``git_remote`` — or, with ``registry``, the whole runtime
    published there (and its branch with it)."""
    started = time.monotonic()
    runtime = run.matrix.runtime(runtime_id)
    summary = RebuildSummary(runtime=runtime.id)
    targets = locked_targets(run, [runtime], arches)
    for target in targets:
        summary.cells.append(run_cell(run, target, force=force, no_cache=no_cache, snapshot=True))
    built = [t.arch.name for t in targets]
    with run.work.runtime_locked(runtime.id), log.step(f"branch content {runtime.id}"):
        summary.branch_dir = assemble_branch(
            runtime, run.work, built, epoch=run.settings.epoch, pins=go_pins(run.lock)
        )
    if registry:
        summary.publish = publish_runtimes(run, [runtime.id], registry, git_remote)
    elif git_remote:
        summary.branch = push_runtime_branch(run, runtime, git_remote, built)
    summary.seconds = round(time.monotonic() - started, 1)
    return summary


def push_runtime_branch(
    run: Run, runtime: Runtime, git_remote: str, arches: Sequence[str] | None = None
) -> BranchResult:
    built = list(arches or runtime.architectures)
    missing = [a for a in runtime.architectures if a not in built]
    if missing:
        msg = (
            f"{runtime.id}: not pushing a branch without {', '.join(missing)}; "
            "rebuild every architecture, or leave out --git-remote"
        )
        raise SnapshotError(msg)
    for arch in built:  # before anything is locked or written
        require_snapshot(run.work.cell(runtime.id, arch))
    with run.work.runtime_locked(runtime.id), log.step(f"push branch {runtime.id}"):
        content = assemble_branch(
            runtime, run.work, built, epoch=run.settings.epoch, pins=go_pins(run.lock)
        )
        return push_branch(run.matrix, runtime.id, content, git_remote, epoch=run.settings.epoch)


def snapshot_runtimes(
    run: Run, runtimes: Sequence[Runtime], arches: Sequence[str] = ()
) -> list[Path]:
    """Snapshot built cells and lay out each runtime's branch content; return those folders."""
    folders = []
    for target in run.matrix.targets(runtimes, arches):  # before anything is locked or written
        cell = run.cell(target)
        try:
            if BuildRecord.read_strict(cell) is None:
                raise SnapshotError(
                    f"{target.key}: no build record in {cell.folder}; build it first"
                )
        except UnreadableRecord as exc:
            raise SnapshotError(f"{exc}; build {target.key} again") from None
    for rt in runtimes:
        targets = run.matrix.targets([rt], arches)
        for target in targets:
            with run.cell(target).locked():
                snapshot_cell(run, target)
        with run.work.runtime_locked(rt.id):
            folders.append(
                assemble_branch(
                    rt,
                    run.work,
                    [t.arch.name for t in targets],
                    epoch=run.settings.epoch,
                    pins=go_pins(run.lock),
                )
            )
    return folders


def test_targets(
    run: Run, runtimes: Sequence[Runtime], arches: Sequence[str] = ()
) -> tuple[list[Report], list[str]]:
    """Conformance checks on built images; the reports, and the cells that failed."""
    reports, failed = [], []
    for target in run.matrix.targets(runtimes, arches):
        try:
            reports.append(test_cell(run, target))
        except ConformanceError as exc:
            reports.append(exc.report)
            failed.append(target.key)
    return reports, failed


def show_reports(reports: Sequence[Report]) -> None:
    for report in reports:
        print_report(report)


def make_bases(
    run: Run, runtimes: Sequence[Runtime], arches: Sequence[str] = ()
) -> list[BaseRecord]:
    """Each OS base the targets need, once per OS and architecture."""
    done: dict[tuple[str, str], BaseRecord] = {}
    for target in run.matrix.targets(runtimes, arches):
        key = (target.runtime.os.id, target.arch.name)
        if key not in done:
            done[key] = prepare_base(run, target)
    return list(done.values())


def render_contexts(
    run: Run, runtimes: Sequence[Runtime], arches: Sequence[str] = ()
) -> list[Path]:
    """Build contexts with their inputs, as a build would see them; their Dockerfiles."""
    paths = []
    targets = locked_targets(run, runtimes, arches)
    for target in targets:
        with run.cell(target).locked():
            context = render_cell(run, target)
            fetch_cell_inputs(run, target, context)
        paths.append(context / "Dockerfile")
    return paths


def outdated_images(
    run: Run,
    runtimes: Sequence[Runtime],
    arches: Sequence[str] = (),
    registry: str | None = None,
) -> OutdatedReport:
    """Which installed packages of the Debian images have a newer version now: the images
    built into the engine, or with ``registry`` (REGISTRY/NAMESPACE) the published ones."""
    targets = run.matrix.targets(runtimes, arches)
    cache = run.settings.cache / "apt"
    if registry is None:
        return check_targets(run.client, targets, cache)
    ref = RegistryRef.parse(registry)
    client = Registry(
        ref.host, scheme=ref.scheme, credentials=resolve_credentials(ref.host, run.settings)
    )
    try:
        return check_published(client, ref, targets, cache)
    finally:
        client.session.close()


@dataclass(kw_only=True)
class RefreshReport:
    """A scheduled refresh: what the published images lacked, which runtimes were rebuilt for
    it (and why), which could not be, and what publishing them did."""

    registry: str
    checked: OutdatedReport
    rebuilt: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # runtime → why it was not refreshed
    publish: PublishReport | None = None

    def behind(self, runtime: str) -> list[ImageReport]:
        return [i for i in self.checked.outdated if i.runtime == runtime]

    @property
    def affected(self) -> list[str]:
        """The runtimes with a published image behind its archives, in matrix order."""
        return list(dict.fromkeys(i.runtime for i in self.checked.outdated))

    def as_json(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "ok": not self.failed and (self.publish is None or self.publish.ok),
            "rebuilt": {
                rt: {i.arch: [dataclasses.asdict(u) for u in i.upgrades] for i in self.behind(rt)}
                for rt in self.rebuilt
            },
            "failed": self.failed,
            "checked": self.checked.as_json(),
            "publish": None if self.publish is None else self.publish.as_json(),
        }

    def lines(self) -> list[str]:
        """Per affected runtime: rebuilt or failed, then its packages that were behind."""
        out = []
        for rt in self.affected:
            state = "rebuilt" if rt in self.rebuilt else f"not refreshed: {self.failed.get(rt)}"
            out.append(f"{rt}\t{state}")
            for image in self.behind(rt):
                out += [f"  {image.arch}\t{u.line()}" for u in image.upgrades]
        if not out:
            out.append("every published image is current: nothing to rebuild")
        return out


def refresh(
    run: Run,
    runtimes: Sequence[Runtime],
    registry: str,
    git_remote: str | None,
    report_path: Path | None = None,
    mirrors: Sequence[str] = (),
) -> RefreshReport:
    """What a schedule runs: check the published images of ``runtimes`` against their OS
    archives, rebuild exactly the runtimes with a package behind (every architecture, since a
    runtime is published whole; the archives' new state is a new base, so the rebuild picks
    the new versions up) and publish those; the others are not touched. A runtime whose
    rebuild or publish fails is not published, and the others go on; the report
    (``report_path``) is written even then, and names it in ``failed``."""
    if report_path is not None:
        check_report_path(report_path)  # before anything is built
    report = RefreshReport(
        registry=str(RegistryRef.parse(registry)),
        checked=outdated_images(run, runtimes, registry=registry),
    )
    try:
        for runtime_id in report.affected:
            runtime = run.matrix.runtime(runtime_id)
            why = ", ".join(
                f"{u.package} {u.installed} → {u.available}"
                for image in report.behind(runtime_id)
                for u in image.upgrades
            )
            log.info(f"{runtime_id}: rebuilding for {why}")
            try:
                for target in locked_targets(run, [runtime]):
                    run_cell(run, target, snapshot=True)
            except LambdaImagesError as exc:
                report.failed[runtime_id] = failure_reason(exc)
                log.error(f"{runtime_id}: not rebuilt: {report.failed[runtime_id]}")
                continue
            report.rebuilt.append(runtime_id)
        if report.rebuilt:
            report.publish = publish_to(run, report.rebuilt, registry, git_remote, None, mirrors)
            for r in report.publish.runtimes:
                if r.status == "failed":
                    report.failed[r.runtime] = f"not published: {r.reason}"
                    report.rebuilt.remove(r.runtime)
    finally:
        if report_path is not None:
            write_json(report_path, report.as_json())
    return report


def publish_runtimes(
    run: Run,
    ids: Sequence[str],
    registry: str,
    git_remote: str | None,
    report: Path | None = None,
    mirrors: Sequence[str] = (),
) -> PublishReport:
    """Publish runtimes from the work folder, then copy them to each mirror; raises
    PublishError naming those that failed on the primary registry (after every runtime was
    tried and the report written). A mirror that is behind is only reported."""
    summary = publish_to(run, ids, registry, git_remote, report, mirrors)
    failed = [r.runtime for r in summary.runtimes if r.status == "failed"]
    if failed:
        summary.show()
        raise PublishError(f"not published: {', '.join(failed)} (reasons above and in --report)")
    return summary


def publish_to(
    run: Run,
    ids: Sequence[str],
    registry: str,
    git_remote: str | None,
    report: Path | None = None,
    mirrors: Sequence[str] = (),
) -> PublishReport:
    """publish_runtimes without the raise: the report says which runtimes failed; mirrors
    that are behind are logged."""
    ref = RegistryRef.parse(registry)
    copies = [RegistryRef.parse(m) for m in mirrors]
    summary = publish(
        run.matrix,
        ids,
        settings=run.settings,
        work=run.work,
        registry=ref,
        credentials=resolve_credentials(ref.host, run.settings),
        git_remote=git_remote,
        report_path=report,
        mirrors=[(m, resolve_credentials(m.host, run.settings)) for m in copies],
    )
    for mirror, behind in summary.mirrors_behind.items():
        log.warning(f"mirror {mirror} is behind on {', '.join(behind)} (see --report)")
    return summary


@dataclass(kw_only=True)
class LockSummary:
    path: Path
    unlocked: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "unlocked": self.unlocked}

    def show(self) -> None:
        for item in self.unlocked:
            log.warning(f"unlocked: {item}")


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
            names = lock_url_inputs(rt, lockfile, run.inputs_cache, tried)
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
