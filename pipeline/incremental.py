"""Incremental: a cell's input digest, and whether it changed since the last build or publish.

A cell (runtime and architecture) is rebuilt only when something that can change its image
changed: the rendered build context (Dockerfile, copied files, fetched wheels, downloaded and
built inputs), the OS base image, the lock entries it uses (a built input's Go module, go.sum
hash and toolchain among them), the labels stamped on it, the pipeline version. The sha256 over
all of these is the cell's *input digest*. It is

- stamped on the image as the label ``lambda-base-images.input-digest``, so it travels with the
  image into the registry and, through the snapshot Dockerfile's ``LABEL`` lines, into the
  runtime's branch — where a fresh CI runner reads it back (``published_digest``);
- written to the cell's ``inputs.json`` record with its state (built or unchanged), which is
  also what a CI cell hands on to the publish job.

``plan`` turns the states of every cell of a run into what the publish job does: runtimes with
a change are published, unchanged runtimes are left alone, and the unchanged cells of a changed
runtime are rebuilt (reproducibly, so they push nothing new) to make the runtime whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from . import __version__, log
from .build import context_digest, image_labels
from .digests import sha256_json
from .errors import BranchError, ConfigurationError
from .git import git_env, run_git
from .lock import Lock
from .matrix import Target
from .oci.registry import Registry, RegistryRef
from .records import ArchSnapshot, BuildRecord, CellInputs, InputsRecord, Report
from .settings import Settings
from .workdir import RECORDS, Cell, WorkDir, read_bounded

INPUT_LABEL: Final = "lambda-base-images.input-digest"
_LABEL_LINE = re.compile(r'LABEL "' + re.escape(INPUT_LABEL) + r'"="(sha256:[0-9a-f]{64})"')


def input_parts(
    target: Target,
    context: Path,
    base_image_id: str,
    lock: Lock,
    settings: Settings,
    build_base_image_id: str | None = None,
) -> dict[str, Any]:
    """Everything a cell's image is made from, as plain JSON-able values.
    ``build_base_image_id``: the base a build stage ran on natively (the build machine's
    architecture), when the Dockerfile has such a stage."""
    rt, arch = target.runtime, target.arch.name
    pip = [asdict(f) for f in lock.pip.get(rt.id, {}).get(arch, [])]
    # Downloaded and built inputs reach the context as files (hashed with it); their lock
    # entries are named too, and a built input's module with its go.sum hash and toolchain.
    inputs = {i.name: lock.inputs.get(i.name, {}).get(i.key(arch)) for i in rt.all_inputs()}
    built = {
        i.name: {
            **(asdict(lock.go[i.name]) if i.name in lock.go else {}),
            "toolchain": i.build.toolchain,
            "ldflags": list(i.build.ldflags),
        }
        for i in rt.all_inputs()
        if i.build is not None
    }
    parts = {
        "context": context_digest(context),
        "base_image_id": base_image_id,
        "lock": {
            "pip": pip,
            "base": lock.bases.get(rt.os.id, {}).get(arch),
            "inputs": dict(sorted(inputs.items())),
            "built": dict(sorted(built.items())),
        },
        "labels": image_labels(target, settings, lock),
        "platform": f"linux/{target.arch.docker}",
        "pipeline": __version__,
    }
    if build_base_image_id is not None:
        parts["build_base_image_id"] = build_base_image_id
    return parts


def cell_inputs(
    target: Target,
    context: Path,
    base_image_id: str,
    lock: Lock,
    settings: Settings,
    build_base_image_id: str | None = None,
) -> CellInputs:
    parts = input_parts(target, context, base_image_id, lock, settings, build_base_image_id)
    return CellInputs(
        runtime=target.runtime.id, arch=target.arch.name, digest=sha256_json(parts), parts=parts
    )


# --- the engine ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EngineImage:
    """The engine's image under a target's tag: its id and the input digest it was built
    from (its INPUT_LABEL; None without one)."""

    image_id: str
    input_digest: str | None


def engine_image(target: Target, client: Any) -> EngineImage | None:
    """The target's image in the engine (one inspect); None when there is none."""
    import docker.errors

    try:
        image = client.images.get(target.image_tag)
    except docker.errors.ImageNotFound:
        return None
    return EngineImage(image_id=image.id, input_digest=(image.labels or {}).get(INPUT_LABEL))


def unchanged_in_engine(target: Target, client: Any, cell: Cell, digest: str) -> bool:
    """True when the engine's image for the target was built from exactly these inputs and
    its build record is still there."""
    image = engine_image(target, client)
    return build_reason(digest, BuildRecord.read(cell), image, force=False) is None


# --- what an unchanged cell skips: pure functions of its records ----------------------------
#
# Each answers why a stage must run (a line for the log), or None when its record holds for
# what the cell is now. A cell is unchanged when none of them has a reason: it costs one
# inspect of its image and the reading of its records, and no check or snapshot runs.


def build_reason(
    digest: str, record: BuildRecord | None, image: EngineImage | None, *, force: bool
) -> str | None:
    """Why the cell's image is built, given its input digest now, its build record and the
    engine's image under its tag."""
    if force:
        return "forced (--force or --no-cache)"
    if record is None:
        return "no build record"
    if image is None:
        return "its image is not in the engine"
    if image.input_digest != digest:
        was = image.input_digest[7:19] if image.input_digest else "none"
        return f"inputs changed ({was} → {digest[7:19]})"
    if image.image_id != record.image_id:
        return f"the engine's image {image.image_id[:19]} is not the one recorded"
    return None


def checks_reason(
    image_id: str, report: Report | None, checks_digest: str, *, force: bool
) -> str | None:
    """Why the conformance checks run on ``image_id``, given the cell's report and the digest
    of the checks there are now (conformance.checks_digest)."""
    if force:
        return "forced (--force or --no-cache)"
    if report is None:
        return "no conformance report"
    if report.image_id != image_id:
        return "its report is of another image"
    if report.checks_digest != checks_digest:
        return "the checks changed since its report"
    if not report.ok:
        return "its report has failed checks"
    return None


def snapshot_reason(
    image_id: str, snapshot: ArchSnapshot | None, missing_layers: Sequence[str], *, force: bool
) -> str | None:
    """Why ``image_id`` is snapshotted, given the cell's snapshot record and which of the layer
    files it names are not in the cell."""
    if force:
        return "forced (--force or --no-cache)"
    if snapshot is None:
        return "no snapshot"
    if snapshot.image_id != image_id:
        return "its snapshot is of another image"
    if missing_layers:
        return f"{len(missing_layers)} layer file(s) of its snapshot are missing"
    return None


# --- what was published -------------------------------------------------------------------


def published_digest(remote: str, target: Target, environ: Mapping[str, str]) -> str | None:
    """The input digest recorded on the runtime's branch at ``remote`` for this arch, read
    from its snapshot Dockerfile (no LFS objects are fetched). None: no branch, or no record."""
    rt = target.runtime.id
    env = git_env(environ, GIT_LFS_SKIP_SMUDGE="1")
    with tempfile.TemporaryDirectory(prefix="lambda-images-published-") as tmp:

        def git(*args: str) -> Any:
            return run_git(args, Path(tmp), env, quiet=True)

        git("init", "--quiet")
        fetched = git("fetch", "--quiet", "--depth=1", "--", remote, f"refs/heads/{rt}")
        if fetched.returncode != 0:
            if "couldn't find remote ref" in fetched.stderr:
                return None
            detail = " ".join(fetched.stderr.strip().splitlines()[-2:])
            msg = f"cannot read branch {rt} from {remote}: {detail}; check the URL and access"
            raise BranchError(msg)
        for path in (f"{target.arch.name}/Dockerfile.{rt}", f"Dockerfile.{rt}"):
            shown = git("show", f"FETCH_HEAD:{path}", "--")
            if shown.returncode == 0:
                return parse_label(shown.stdout)
    return None


def registry_digest(registry: Registry, ref: RegistryRef, target: Target) -> str | None:
    """The input digest in the config of the image the registry's ``<tag>-<arch>`` names (the
    build stamps it as a label, and publishing keeps the snapshot's labels). None: no such
    tag, or no label."""
    repo = ref.repository(target.runtime.family.id)
    if registry.manifest_digest(repo, target.published_tag) is None:
        return None
    body, _ = registry.get_manifest(repo, target.published_tag)
    try:
        config = json.loads(registry.get_blob(repo, json.loads(body)["config"]["digest"]))
        label = (config.get("config") or {}).get("Labels", {}).get(INPUT_LABEL)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return label if isinstance(label, str) else None


def parse_label(dockerfile: str) -> str | None:
    for line in dockerfile.splitlines():
        match = _LABEL_LINE.fullmatch(line.strip())
        if match:
            return match.group(1)
    return None


# --- cell output for another machine ------------------------------------------------------


def export_cell(cell: Cell, out: Path) -> Cell:
    """Copy a cell's records and layers to the same cell under ``out`` (hard links when the
    file system allows) — what a CI cell uploads as its artifact."""
    dest = WorkDir(out).cell(cell.runtime, cell.arch)
    if dest.folder.exists():
        shutil.rmtree(dest.folder)
    dest.folder.mkdir(parents=True)
    record = InputsRecord.read(cell)
    if record is not None and record.state == "unchanged":
        # Nothing new to publish: the record alone tells the publish job so.
        record.write(dest)
        return dest
    for name in RECORDS:
        if cell.record(name).is_file():
            shutil.copy2(cell.record(name), dest.record(name))
    if cell.layers.is_dir():
        shutil.copytree(cell.layers, dest.layers, copy_function=_link_or_copy)
    return dest


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# --- plan for the publish job -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Plan:
    publish: list[str] = field(default_factory=list)  # runtimes with at least one new cell
    unchanged: list[str] = field(default_factory=list)  # every cell as published
    incomplete: list[str] = field(default_factory=list)  # a cell failed: not published
    unlocked: list[str] = field(default_factory=list)  # a cell is unlocked: skipped, not built
    refill: list[dict[str, Any]] = field(default_factory=list)  # cells to rebuild with --force
    # Every cell of the run: {"runtime", "arch", "state"}, state built, unchanged, failed (no
    # record) or unlocked (`matrix --json` said "locked": false; never built).
    cells: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "refill": {"include": self.refill}}


def _is_cell(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(key), str) for key in ("runtime", "arch")
    )


CELLS_MAX_BYTES: Final = 8 << 20  # `matrix --json` of every runtime is a few kilobytes


def load_cells(path: Path) -> list[dict[str, Any]]:
    """The run's cells from ``lambda-images matrix --json`` output: ``{"include": [...]}``,
    each with a ``runtime`` and an ``arch``, and ``locked`` (true when left out)."""
    try:
        data = json.loads(read_bounded(path, CELLS_MAX_BYTES).decode("utf-8"))
        cells = data["include"]
        if not isinstance(cells, list) or not all(
            isinstance(c, dict)
            and isinstance(c.get("runtime"), str)
            and isinstance(c.get("arch"), str)
            and isinstance(c.get("locked", True), bool)
            for c in cells
        ):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        # RecursionError: JSON nested deeper than the parser goes (a hostile file); TooLarge
        # is a ValueError.
        msg = f'{path}: expected {{"include": [{{"runtime": …, "arch": …}}, …]}} (matrix --json)'
        raise ConfigurationError(msg) from None
    return [
        {str(k): v if k == "locked" else str(v) for k, v in c.items() if k != "unlocked"}
        for c in cells
    ]


def read_states(folders: Iterable[Path]) -> dict[tuple[str, str], str]:
    """(runtime, arch) → state from the cells' ``inputs.json`` records found in the folders
    (work folders, or CI artifacts laid out the same way)."""
    states: dict[tuple[str, str], str] = {}
    for folder in folders:
        for cell in WorkDir(folder).cells():
            record = InputsRecord.read(cell)
            if record is not None:
                states[(record.runtime, record.arch)] = record.state
    return states


def plan(cells: Iterable[Mapping[str, Any]], states: Mapping[tuple[str, str], str]) -> Plan:
    """Decide per runtime from the cells of the run (``{"runtime", "arch", "locked"?, …}``)
    and the states the cells reported: a cell with no state failed, and its runtime is not
    published; a runtime with an unlocked cell (never built) is skipped."""
    by_runtime: dict[str, list[Mapping[str, Any]]] = {}
    for cell in cells:
        by_runtime.setdefault(cell["runtime"], []).append(cell)
    result = Plan()
    for runtime, its in sorted(by_runtime.items()):
        got = [
            states.get((c["runtime"], c["arch"]), "failed") if c.get("locked", True) else "unlocked"
            for c in its
        ]
        result.cells.extend(
            {"runtime": runtime, "arch": c["arch"], "state": s}
            for c, s in zip(its, got, strict=True)
        )
        if "failed" in got:
            result.incomplete.append(runtime)
        elif "unlocked" in got:
            result.unlocked.append(runtime)
        elif all(s == "unchanged" for s in got):
            result.unchanged.append(runtime)
        else:
            result.publish.append(runtime)
            result.refill.extend(
                {k: v for k, v in c.items() if k != "locked"}
                for c, s in zip(its, got, strict=True)
                if s == "unchanged"
            )
    if result.refill:
        # The unchanged cells of a changed runtime are rebuilt before it is published.
        ready = {c["runtime"] for c in result.refill}
        log.info(f"rebuilding unchanged cells of {', '.join(sorted(ready))} to publish them whole")
    return result
