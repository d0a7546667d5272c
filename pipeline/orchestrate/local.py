"""Commands that act on the checkout or on one function, not on cells: the generated files
(dockerfiles/, the README's and docs' tables), the publish plan, and local invocation.

Each imports the stages it calls where it calls them: these commands share nothing else."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StaleError
from ..settings import Settings
from .requests import Cells
from .run import Run

if TYPE_CHECKING:
    from ..emulator import FunctionConfig, InvokeResult
    from ..incremental import Plan


def dockerfiles(run: Run, *, check: bool) -> tuple[list[str], int]:
    """Write the committed ``dockerfiles/`` (the files written), or with ``check`` raise
    StaleError naming the stale ones; and how many files there are."""
    from ..render import RENDERED_DIR, rendered_files, stale_files, write_rendered

    matrix = run.matrix
    folder = matrix.path.parent / RENDERED_DIR
    expected = rendered_files(matrix.targets(matrix.runtimes), templates_dir=matrix.templates_dir)
    if check:
        stale = stale_files(expected, folder)
        if stale:
            names = ", ".join(f"{RENDERED_DIR}/{s}" for s in stale)
            msg = f"{len(stale)} rendered file(s) are stale: {names}; run `lambda-images render`"
            raise StaleError(msg)
        return [], len(expected)
    return [f"{RENDERED_DIR}/{rel}" for rel in write_rendered(expected, folder)], len(expected)


def docs(run: Run, readme: Path | None, *, check: bool) -> list[Path]:
    """Write the generated tables (the README's runtimes, docs/emulator.md's checks); the files
    written, or with ``check`` a StaleError naming the first stale one."""
    from ..conformance import checks_table
    from ..docs import generated_docs

    written = []
    for path, text in generated_docs(run.matrix, run.lock, readme, checks_table()):
        current = path.read_text("utf-8")
        if text == current:
            continue
        if check:
            msg = f"{path}: the generated tables are stale; run `lambda-images docs`"
            if path.name == "README.md":
                msg = f"{path}: the runtime tables are stale; run `lambda-images docs`"
            raise StaleError(msg)
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written


def job_matrix(run: Run, cells: Cells) -> dict[str, list[dict[str, Any]]]:
    """The CI job matrix of ``cells``: per runtime and architecture its runner, and whether the
    lock holds everything it downloads (``locked``; when not, ``unlocked`` says what is
    missing: such a cell cannot be built, and the workflow skips it with a notice)."""
    targets = run.matrix.targets(cells.runtimes, cells.arches)
    jobs: list[dict[str, Any]] = []
    for job, target in zip(run.matrix.job_matrix(targets)["include"], targets, strict=True):
        why = run.lock.unlocked(target)
        jobs.append({**job, "locked": why is None} | ({"unlocked": why} if why else {}))
    return {"include": jobs}


def runtime_rows(run: Run) -> list[dict[str, Any]]:
    """What ``list`` shows of each runtime, the SDK column as the lock pins it."""
    from ..pins import sdk_column

    today, lock = run.settings.today, run.lock
    return [rt.as_json(today, sdk=sdk_column(rt, lock)) for rt in run.matrix.runtimes]


def plan(cells_json: Path, folders: Sequence[Path]) -> Plan:
    """From the inputs.json the cells left in ``folders``: what to publish, rebuild, or leave."""
    from ..incremental import load_cells, read_states
    from ..incremental import plan as make_plan

    return make_plan(load_cells(cells_json), read_states(folders))


def invoke(settings: Settings, function: FunctionConfig, payload: bytes) -> InvokeResult:
    """One invocation of ``function`` (no matrix needed: any image can be invoked)."""
    from ..emulator import invoke_once
    from ..engine import connect

    client = connect(settings.docker_host)
    return invoke_once(function, client, payload, runtime_api_host=settings.runtime_api_host)


def serve_function(
    settings: Settings, function: FunctionConfig, port: int, ready: Callable[[str], None]
) -> None:
    from ..emulator import serve
    from ..engine import connect

    client = connect(settings.docker_host)
    serve(function, client, port, ready, runtime_api_host=settings.runtime_api_host)
