"""Incremental: a cell's input digest, and whether it changed since the last build or publish.

A cell (runtime and architecture) is rebuilt only when something that can change its image
changed: the rendered build context (Dockerfile, copied files, fetched wheels), the OS base image,
the lock entries it uses, the labels stamped on it, the pipeline version. The sha256 over all of
these is the cell's *input digest*. It is

- stamped on the image as the label ``lambda-base-images.input-digest``, so it travels with the
  image into the registry and, through the snapshot Dockerfile's ``LABEL`` lines, into the
  runtime's branch — where a fresh CI runner reads it back (``published_digest``);
- written to ``<work>/<runtime>/<arch>/inputs.json`` with the cell's state (built or unchanged),
  which is also what a CI cell hands on to the publish job.

``plan`` turns the states of every cell of a run into what the publish job does: runtimes with
a change are published, unchanged runtimes are left alone, and the unchanged cells of a changed
runtime are rebuilt (reproducibly, so they push nothing new) to make the runtime whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from . import __version__, log
from .build import RECORD as BUILD_RECORD
from .build import context_digest, image_labels
from .errors import BranchError, ConfigurationError
from .lock import Lock
from .matrix import Target

INPUT_LABEL: Final = "lambda-base-images.input-digest"
RECORD: Final = "inputs.json"
SNAPSHOT_RECORD: Final = "snapshot.json"
State = Literal["built", "unchanged"]
_LABEL_LINE = re.compile(r'^LABEL "' + re.escape(INPUT_LABEL) + r'"="(sha256:[0-9a-f]{64})"$')


@dataclass(frozen=True, kw_only=True)
class CellInputs:
    runtime: str
    arch: str
    digest: str
    parts: dict[str, Any]


def input_parts(target: Target, context: Path, base_image_id: str, lock: Lock) -> dict[str, Any]:
    """Everything a cell's image is made from, as plain JSON-able values."""
    rt, arch = target.runtime, target.arch.name
    pip = [asdict(f) for f in lock.pip.get(rt.id, {}).get(arch, [])]
    return {
        "context": context_digest(context),
        "base_image_id": base_image_id,
        "lock": {"pip": pip, "base": lock.bases.get(rt.os.id, {}).get(arch)},
        "labels": image_labels(target),
        "platform": f"linux/{target.arch.docker}",
        "pipeline": __version__,
    }


def digest_of(parts: Mapping[str, Any]) -> str:
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def cell_inputs(target: Target, context: Path, base_image_id: str, lock: Lock) -> CellInputs:
    parts = input_parts(target, context, base_image_id, lock)
    return CellInputs(
        runtime=target.runtime.id, arch=target.arch.name, digest=digest_of(parts), parts=parts
    )


# --- records ------------------------------------------------------------------------------


def write_record(folder: Path, inputs: CellInputs, state: State) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RECORD
    data = {**asdict(inputs), "state": state}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_record(folder: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((folder / RECORD).read_text("utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{folder / RECORD}:{exc.lineno}: not valid JSON") from None
    return data


def unchanged_in_engine(target: Target, client: Any, folder: Path, digest: str) -> bool:
    """True when the engine's image for the target was built from exactly these inputs and
    its build record is still there."""
    import docker.errors

    if not (folder / BUILD_RECORD).is_file():
        return False
    try:
        image = client.images.get(target.image_tag)
    except docker.errors.ImageNotFound:
        return False
    built_from = (image.labels or {}).get(INPUT_LABEL)
    recorded = json.loads((folder / BUILD_RECORD).read_text("utf-8")).get("image_id")
    return bool(built_from == digest and recorded == image.id)


def snapshot_current(folder: Path, image_id: str) -> bool:
    """True when ``snapshot.json`` describes ``image_id`` and every layer file is present."""
    try:
        snap = json.loads((folder / SNAPSHOT_RECORD).read_text("utf-8"))
    except FileNotFoundError:
        return False
    if snap.get("image_id") != image_id:
        return False
    return all((folder / "layers" / layer["file"]).is_file() for layer in snap["layers"])


# --- what was published -------------------------------------------------------------------


def published_digest(remote: str, target: Target) -> str | None:
    """The input digest recorded on the runtime's branch at ``remote`` for this arch, read
    from its snapshot Dockerfile (no LFS objects are fetched). None: no branch, or no record."""
    rt = target.runtime.id
    env = {
        **os.environ,
        "GIT_LFS_SKIP_SMUDGE": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    with tempfile.TemporaryDirectory(prefix="lambda-images-published-") as tmp:

        def git(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["git", *args], cwd=tmp, env=env, capture_output=True, text=True, check=False
            )

        git("init", "--quiet")
        fetched = git("fetch", "--quiet", "--depth=1", remote, f"refs/heads/{rt}")
        if fetched.returncode != 0:
            if "couldn't find remote ref" in fetched.stderr:
                return None
            detail = " ".join(fetched.stderr.strip().splitlines()[-2:])
            msg = f"cannot read branch {rt} from {remote}: {detail}; check the URL and access"
            raise BranchError(msg)
        for path in (f"{target.arch.name}/Dockerfile.{rt}", f"Dockerfile.{rt}"):
            shown = git("show", f"FETCH_HEAD:{path}")
            if shown.returncode == 0:
                return parse_label(shown.stdout)
    return None


def parse_label(dockerfile: str) -> str | None:
    for line in dockerfile.splitlines():
        match = _LABEL_LINE.match(line.strip())
        if match:
            return match.group(1)
    return None


# --- cell output for another machine ------------------------------------------------------

CELL_FILES: Final = (BUILD_RECORD, RECORD, SNAPSHOT_RECORD, "test.json")  # test.json: conformance


def export_cell(folder: Path, out: Path, target: Target) -> Path:
    """Copy a cell's records and layers to ``out/<runtime>/<arch>/`` (hard links when the
    file system allows) — what a CI cell uploads as its artifact."""
    dest = out / target.runtime.id / target.arch.name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    record = read_record(folder) or {}
    if record.get("state") == "unchanged":
        # Nothing new to publish: the record alone tells the publish job so.
        shutil.copy2(folder / RECORD, dest / RECORD)
        return dest
    for name in CELL_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, dest / name)
    if (folder / "layers").is_dir():
        shutil.copytree(folder / "layers", dest / "layers", copy_function=_link_or_copy)
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
    refill: list[dict[str, str]] = field(default_factory=list)  # cells to rebuild with --force


def read_states(folders: Iterable[Path]) -> dict[tuple[str, str], str]:
    """(runtime, arch) → state from every ``inputs.json`` found under the folders."""
    states: dict[tuple[str, str], str] = {}
    for folder in folders:
        for path in sorted(folder.rglob(RECORD)):
            data = json.loads(path.read_text("utf-8"))
            states[(data["runtime"], data["arch"])] = data["state"]
    return states


def plan(cells: Iterable[Mapping[str, str]], states: Mapping[tuple[str, str], str]) -> Plan:
    """Decide per runtime from the cells of the run (``{"runtime", "arch", …}``) and the
    states the cells reported; a cell with no state failed."""
    by_runtime: dict[str, list[Mapping[str, str]]] = {}
    for cell in cells:
        by_runtime.setdefault(cell["runtime"], []).append(cell)
    result = Plan()
    for runtime, its in sorted(by_runtime.items()):
        got = [states.get((c["runtime"], c["arch"])) for c in its]
        if any(s is None for s in got):
            result.incomplete.append(runtime)
        elif all(s == "unchanged" for s in got):
            result.unchanged.append(runtime)
        else:
            result.publish.append(runtime)
            result.refill.extend(dict(c) for c, s in zip(its, got, strict=True) if s == "unchanged")
    if result.refill:
        # The unchanged cells of a changed runtime are rebuilt before it is published.
        ready = {c["runtime"] for c in result.refill}
        log.info(f"rebuilding unchanged cells of {', '.join(sorted(ready))} to publish them whole")
    return result
