"""Freshness: what the built or published Debian images lack from their archives, and what
the pinned inputs lack from their registries; rebuilding and republishing exactly the runtimes
whose images lack something (``refresh``), and moving pins to their registries' newest
releases (``lock --upgrade``)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import gotool, log
from ..errors import InputError, LambdaImagesError, OutdatedError, PublishError, failure_reason
from ..inputs import lock_npm, lock_pip, relock_input
from ..lock import Lock
from ..matrix import ARCHES, Matrix, Runtime, load_matrix, read_matrix_text
from ..oci.transport import Unreachable
from ..outdated import ImageReport, OutdatedReport, check_published, check_targets
from ..pins import Pin, collect, locked_versions, normal, rewrite, select
from ..publish.report import PublishReport
from ..render import RENDERED_DIR
from ..text import markdown_code
from ..upstream import InputsReport, Upstream, check_pin, check_pins
from ..versions import REGISTRY_NAMES, Kind
from ..workdir import write_atomic, write_json
from .cells import locked_targets, run_cell
from .local import dockerfiles, docs
from .release import publish
from .requests import Cells, OutdatedRequest, PublishRequest, RefreshRequest, UpgradeRequest
from .run import Run


@dataclass(kw_only=True)
class Freshness:
    """What ``outdated`` found: the images' packages behind their archives, and the pinned
    inputs behind their registries (either None when not asked for)."""

    images: OutdatedReport | None = None
    inputs: InputsReport | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "images": None if self.images is None else self.images.as_json(),
            "inputs": None if self.inputs is None else self.inputs.as_json(),
        }

    def raise_for_failure(self) -> None:
        """OutdatedError naming the images and the inputs that have something newer."""
        reasons = []
        if self.images is not None and self.images.outdated:
            names = ", ".join(f"{i.runtime}/{i.arch}" for i in self.images.outdated)
            reasons.append(f"newer packages in the archives for {names}; rebuild them")
        if self.inputs is not None and self.inputs.outdated:
            names = ", ".join(dict.fromkeys(i.name for i in self.inputs.outdated))
            reasons.append(
                f"newer releases of {names}; move the pins with `lambda-images lock --upgrade`"
            )
        if reasons:
            raise OutdatedError("; ".join(reasons))


def outdated(run: Run, request: OutdatedRequest) -> Freshness:
    """The images (built, or published with a registry) against their archives, then the
    pins of the request's runtimes against their registries."""
    found = Freshness()
    if request.images:
        found.images = outdated_images(run, request)
    if request.inputs:
        found.inputs = outdated_inputs(run, request.cells.runtimes)
    return found


def _pins(run: Run, runtimes: Sequence[Runtime]) -> tuple[str, Any]:
    text = read_matrix_text(run.matrix.path)
    return text, collect(run.matrix, run.lock, runtimes, run.settings.upstreams, text)


def outdated_inputs(run: Run, runtimes: Sequence[Runtime]) -> InputsReport:
    """Every pin of ``runtimes`` against the newest stable release its registry lists (a
    registry that does not answer is named, and its pins are left unchecked)."""
    _, pins = _pins(run, runtimes)
    upstream = Upstream(run.settings.upstreams)
    try:
        with log.step(f"registries of {len(pins.pins)} pinned input(s)"):
            return check_pins(upstream, pins)
    finally:
        upstream.close()


def outdated_images(run: Run, request: OutdatedRequest) -> OutdatedReport:
    """Which installed packages of the Debian images have a newer version now: the images
    built into the engine, or with a registry the published ones."""
    targets = run.matrix.targets(request.cells.runtimes, request.cells.arches)
    cache = run.settings.cache / "apt"
    if request.registry is None:
        return check_targets(run.client, targets, cache)
    client = run.registry(request.registry)
    try:
        return check_published(client, request.registry, targets, cache)
    finally:
        client.session.close()


@dataclass(kw_only=True)
class RefreshReport:
    """A scheduled refresh: what the published images lacked, which runtimes were rebuilt for
    it (and why), which could not be, and what publishing them did."""

    registry: str
    checked: OutdatedReport | None = None  # None: the check itself did not finish
    rebuilt: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # runtime → why it was not refreshed
    publish: PublishReport | None = None
    error: str | None = None  # what stopped the refresh outside any one runtime, if anything

    def behind(self, runtime: str) -> list[ImageReport]:
        outdated = self.checked.outdated if self.checked is not None else []
        return [i for i in outdated if i.runtime == runtime]

    @property
    def affected(self) -> list[str]:
        """The runtimes with a published image behind its archives, in matrix order."""
        outdated = self.checked.outdated if self.checked is not None else []
        return list(dict.fromkeys(i.runtime for i in outdated))

    def raise_for_failure(self) -> None:
        """PublishError naming the runtimes that could not be rebuilt or published."""
        if self.failed:
            names = ", ".join(self.failed)
            raise PublishError(f"not refreshed: {names} (reasons above and in --report)")

    def as_json(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "ok": self.error is None
            and not self.failed
            and (self.publish is None or self.publish.ok),
            "error": self.error,
            "rebuilt": {
                rt: {i.arch: [dataclasses.asdict(u) for u in i.upgrades] for i in self.behind(rt)}
                for rt in self.rebuilt
            },
            "failed": self.failed,
            "checked": None if self.checked is None else self.checked.as_json(),
            "publish": None if self.publish is None else self.publish.as_json(),
        }


def refresh(run: Run, request: RefreshRequest) -> RefreshReport:
    """What a schedule runs: check the published images of the request's runtimes against their
    OS archives, rebuild exactly the runtimes with a package behind (every architecture, since a
    runtime is published whole; the archives' new state is a new base, so the rebuild picks
    the new versions up) and publish those; the others are not touched. A runtime whose
    rebuild or publish fails is not published, and the others go on; the report is written
    even then, and names it in ``failed``. The report (``--report``) is written however the
    refresh ends, a check that could not be made included (``error``)."""
    by_id = {rt.id: rt for rt in request.runtimes}
    report = RefreshReport(registry=str(request.registry))
    try:
        report.checked = outdated_images(
            run, OutdatedRequest(cells=Cells(runtimes=request.runtimes), registry=request.registry)
        )
        for runtime_id in report.affected:
            why = ", ".join(
                f"{u.package} {u.installed} → {u.available}"
                for image in report.behind(runtime_id)
                for u in image.upgrades
            )
            log.info(f"{runtime_id}: rebuilding for {why}")
            try:
                for target in locked_targets(run, [by_id[runtime_id]]):
                    run_cell(run, target, snapshot=True)
            except LambdaImagesError as exc:
                report.failed[runtime_id] = failure_reason(exc)
                log.error(f"{runtime_id}: not rebuilt: {report.failed[runtime_id]}")
                continue
            report.rebuilt.append(runtime_id)
        if report.rebuilt:
            report.publish = publish(
                run,
                PublishRequest(
                    runtimes=tuple(by_id[rt] for rt in report.rebuilt), registry=request.registry,
                    mirrors=request.mirrors, remote=request.remote,
                ),
            )  # fmt: skip
            for r in report.publish.runtimes:
                if r.status == "failed":
                    report.failed[r.runtime] = f"not published: {r.reason}"
                    report.rebuilt.remove(r.runtime)
    except BaseException as exc:  # the report says why it stopped, then the error goes on
        report.error = failure_reason(exc) if isinstance(exc, Exception) else "interrupted"
        raise
    finally:
        if request.report is not None:
            try:
                write_json(request.report, report.as_json())
            except OSError as exc:
                msg = f"--report {request.report}: cannot write the report ({exc.strerror})"
                raise PublishError(msg) from None
    return report


# --- lock --upgrade ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class Move:
    """A pin moved: its input, registry, old and new version, the runtimes it reaches."""

    name: str
    kind: Kind
    old: str
    new: str
    runtimes: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(kw_only=True)
class UpgradeReport:
    matrix: Path
    lock: Path
    moved: list[Move] = field(default_factory=list)
    current: list[str] = field(default_factory=list)
    not_checked: dict[str, str] = field(default_factory=dict)  # input → why
    written: list[str] = field(default_factory=list)  # the files written, generated ones too

    def as_json(self) -> dict[str, Any]:
        return {
            "matrix": str(self.matrix), "lock": str(self.lock),
            "moved": [m.as_json() for m in self.moved], "current": self.current,
            "not_checked": self.not_checked, "written": self.written,
        }  # fmt: skip

    def markdown(self) -> str:
        """What moved, for a pull request's body: one line per input, ``old → new``."""
        lines = ["Written by `lambda-images lock --upgrade`: pins moved to the newest release "
                 "their registry lists (within any `upgrade_below`), each verified against the "
                 "digest the registry publishes.", ""]  # fmt: skip
        for m in self.moved:
            lines.append(
                f"- {markdown_code(m.name)} ({REGISTRY_NAMES[m.kind]}): {markdown_code(m.old)} → "
                f"{markdown_code(m.new)} — {', '.join(markdown_code(r) for r in m.runtimes)}"
            )
        if not self.moved:
            lines.append("Every pin is at its newest release.")
        for name, why in self.not_checked.items():
            lines.append(f"- {markdown_code(name)}: not checked ({markdown_code(why)})")
        return "\n".join(lines) + "\n"


def _refused(pin: Pin, version: str, what: str, actual: str, published: str) -> InputError:
    registry = REGISTRY_NAMES[pin.kind]
    msg = (
        f"{pin.name} {version}: {what} is {actual}, but {registry} publishes {published}; "
        "refused: nothing was written"
    )
    return InputError(msg)


def upgrade_pins(run: Run, request: UpgradeRequest) -> UpgradeReport:
    """``lock --upgrade``: move each pin of the request (every pin of its runtimes when none
    is named) to the newest stable release its registry lists, below its bound; lock what
    moved (downloaded, built or resolved and hashed as ``lock`` does) and check each new hash
    against the digest the registry publishes. runtimes.yaml, the lock and a probe's go.mod
    are written only once every hash checks out: a refused one leaves all of them as they
    were. A named pin whose registry cannot be read is an error; with none named it is
    reported and left. The files generated from them (dockerfiles/, which names the inputs'
    files, and the README's tables, whose SDK column the lock feeds) are written again where
    the checkout has them."""
    path = run.matrix.path
    text, pins = _pins(run, request.runtimes)
    chosen = select(pins.pins, request.names)
    report = UpgradeReport(matrix=path, lock=run.lock.path)
    upstream = Upstream(run.settings.upstreams)
    try:
        moves: list[tuple[Pin, str]] = []
        for pin in chosen:
            try:
                checked = check_pin(upstream, pin)
                why = checked.note
            except Unreachable as exc:
                checked, why = None, str(exc)
            if checked is None or checked.state == "not checked":
                if request.names:
                    raise InputError(f"{pin.name}: its registry could not be read: {why}")
                report.not_checked[pin.name] = why
            elif checked.state == "current" or checked.newest is None:
                report.current.append(pin.name)
            else:
                moves.append((pin, checked.newest))
        if not moves:
            return report
        new_text = rewrite(text, path, moves, run.settings.upstreams)
        matrix = load_matrix(
            path, text=new_text, namespace=run.matrix.namespace,
            templates_dir=run.matrix.templates_dir,
        )  # fmt: skip
        lock = Lock.load(run.lock.path)  # its own copy: saved only when everything checks out
        with log.step(f"lock {len(moves)} moved pin(s)"):
            go_files = _relock(run, matrix, lock, moves)
        with log.step("check each new hash against its registry"):
            report.moved = _verify(run, upstream, matrix, lock, moves, go_files)
    finally:
        upstream.close()
    write_atomic(path, new_text.encode("utf-8"))
    lock.save()
    for file, data in go_files.items():
        write_atomic(file, data)
    report.written = [str(path), str(lock.path), *map(str, go_files)]
    moved_run = dataclasses.replace(run, matrix=matrix, _lock=lock)
    if (path.parent / RENDERED_DIR).is_dir():
        report.written += [str(path.parent / f) for f in dockerfiles(moved_run, check=False)[0]]
    if (path.parent / "README.md").is_file():
        report.written += [str(f) for f in docs(moved_run, None, check=False)]
    if request.markdown is not None:
        write_atomic(request.markdown, report.markdown().encode("utf-8"))
    return report


def _input(matrix: Matrix, pin: Pin) -> Any:
    for runtime in matrix.runtimes:
        for item in runtime.all_inputs():
            if item.name == pin.name:
                return item
    raise InputError(f"{pin.name}: no longer an input of {matrix.path}")


def _relock(
    run: Run, matrix: Matrix, lock: Lock, moves: Sequence[tuple[Pin, str]]
) -> dict[Path, bytes]:
    """Lock what each move changes, into ``lock``; the go.mod and go.sum files a probe's
    module gets (not written yet)."""
    from ..probes import go_toolchain

    by_id = {rt.id: rt for rt in matrix.runtimes}
    pip: set[str] = set()
    npm: set[str] = set()
    go_files: dict[Path, bytes] = {}
    for pin, version in moves:
        if pin.kind == "pypi":
            pip.update(pin.runtimes)
        elif pin.kind == "npm":
            npm.update(pin.runtimes)
        elif any(place.role == "gomod" for place in pin.places):
            runtime = by_id[pin.runtimes[0]]
            for place in pin.places:
                assert place.file is not None
                folder = place.file.parent
                host = ARCHES[runtime.architectures[0]]
                env = gotool.environment(host, go_toolchain(runtime), run.settings.environ)
                pending = {p.name: d for p, d in go_files.items() if p.parent == folder}
                made = gotool.required_at(
                    folder, pin.package, version, env=env, what=f"{pin.name} {version}",
                    files=pending,
                )  # fmt: skip
                go_files.update({folder / name: data for name, data in made.items()})
        else:
            item = _input(matrix, pin)
            arches = sorted({a for rt in pin.runtimes for a in by_id[rt].architectures})
            relock_input(item, arches, lock, run.inputs_cache, environ=run.settings.environ)
    for runtime_id in sorted(pip):
        runtime = by_id[runtime_id]
        for arch in runtime.architectures:
            lock.pip.setdefault(runtime_id, {})[arch] = lock_pip(runtime, arch)
    for runtime_id in sorted(npm):
        lock.npm[runtime_id] = lock_npm(by_id[runtime_id], run.inputs_cache)
    return go_files


def _sha(path: Path, algorithm: str) -> Any:
    digest = hashlib.new(algorithm)
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest


@dataclass(frozen=True, kw_only=True)
class _Moved:
    """What a verifier reads: the new matrix and lock, the probe files made, the registries."""

    run: Run
    upstream: Upstream
    matrix: Matrix
    lock: Lock
    go_files: dict[Path, bytes]

    def arches(self, pin: Pin) -> list[str]:
        return sorted({a for rt in pin.runtimes for a in self.matrix.runtime(rt).architectures})


def _verify_pypi(moved: _Moved, pin: Pin, version: str) -> str:
    """Every wheel of the pinned project the runtimes now lock: its sha256 is PyPI's."""
    for runtime_id in pin.runtimes:
        for files in moved.lock.pip.get(runtime_id, {}).values():
            for item in files:
                name, locked = item.filename.split("-")[:2]
                if normal(name) != normal(pin.package):
                    continue
                version = locked
                published = moved.upstream.pypi_sha256(pin.package, locked).get(item.filename)
                if published != item.sha256:
                    actual = f"sha256 {item.sha256}"
                    raise _refused(pin, locked, item.filename, actual, published or "no such file")
    return version


def _verify_npm(moved: _Moved, pin: Pin, version: str) -> str:
    """The package's tarball in each runtime's tree: its sha512 is the registry's integrity."""
    for runtime_id in pin.runtimes:
        version = locked_versions(runtime_id, moved.lock).get(normal(pin.package), version)
        path = f"node_modules/{pin.package}"
        entry = next(p for p in moved.lock.npm[runtime_id] if p.path == path)
        assert entry.sha256 is not None
        sha512 = _sha(moved.run.inputs_cache / entry.sha256, "sha512").digest()
        actual = "sha512-" + base64.b64encode(sha512).decode("ascii")
        published = moved.upstream.npm_integrity(pin.package, version)
        if actual != published:
            name = entry.url.rsplit("/", 1)[-1]
            raise _refused(pin, version, name, f"integrity {actual}", published)
    return version


def _verify_maven(moved: _Moved, pin: Pin, version: str) -> str:
    """The artifact's SHA-1 is the one the repository publishes beside it."""
    item = _input(moved.matrix, pin)
    for arch in moved.arches(pin):
        digest = moved.lock.inputs[pin.name][item.key(arch)]
        assert digest is not None
        sha1 = _sha(moved.run.inputs_cache / digest, "sha1").hexdigest()
        published = moved.upstream.maven_sha1(item.url(arch))
        if sha1 != published:
            raise _refused(pin, version, item.filename(arch), f"SHA-1 {sha1}", published)
    return version


def _verify_nodejs(moved: _Moved, pin: Pin, version: str) -> str:
    """Each archive's sha256 is its line in the release's SHASUMS256.txt."""
    item = _input(moved.matrix, pin)
    published = moved.upstream.nodejs_sha256(version)
    for arch in moved.arches(pin):
        digest = moved.lock.inputs[pin.name][item.key(arch)]
        expected = published.get(item.filename(arch), "no such file")
        if digest != expected:
            raise _refused(pin, version, item.filename(arch), f"sha256 {digest}", expected)
    return version


def _verify_go(moved: _Moved, pin: Pin, version: str) -> str:
    """The module tree's hash (the built input's, or the one the probe's go.sum now records)
    is the checksum database's record."""
    published = moved.upstream.go_sum(pin.package, version)
    if not any(place.role == "gomod" for place in pin.places):
        actual = moved.lock.go[pin.name].sum
        if actual != published:
            raise _refused(pin, version, "its module tree", actual, published)
        return version
    line = f"{pin.package} {version} "
    for file, data in moved.go_files.items():
        if file.name == "go.sum":
            sums = [s[len(line) :] for s in data.decode().splitlines() if s.startswith(line)]
            if sums != [published]:
                raise _refused(pin, version, str(file), " ".join(sums) or "no line", published)
    return version


# How each kind's new hash is checked against what its registry publishes.
VERIFIERS: dict[Kind, Callable[[_Moved, Pin, str], str]] = {
    "pypi": _verify_pypi, "npm": _verify_npm, "maven": _verify_maven, "nodejs": _verify_nodejs,
    "go": _verify_go,
}  # fmt: skip


def _verify(
    run: Run, upstream: Upstream, matrix: Matrix, lock: Lock, moves: Sequence[tuple[Pin, str]],
    go_files: dict[Path, bytes],
) -> list[Move]:  # fmt: skip
    """Each moved pin's new artifacts against the digests its registry publishes (VERIFIERS);
    the moves as locked (a package pinned by the lock alone moves to what it resolved)."""
    moved = _Moved(run=run, upstream=upstream, matrix=matrix, lock=lock, go_files=go_files)
    out = []
    for pin, version in moves:
        new = VERIFIERS[pin.kind](moved, pin, version)
        out.append(Move(name=pin.name, kind=pin.kind, old=pin.version, new=new,
                        runtimes=pin.runtimes))  # fmt: skip
    return out
