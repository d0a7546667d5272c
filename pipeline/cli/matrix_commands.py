"""Commands about the matrix and the files generated from it: list, matrix, docs, render."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from .. import orchestrate as do
from .. import show
from ..errors import UsageError
from ..settings import Settings
from . import options as opt
from .group import cli

if TYPE_CHECKING:
    from ..orchestrate import Cells, Run


@cli.command("list")
@opt.json_option
@click.pass_obj
def list_command(settings: Settings, as_json: bool) -> None:
    """The runtimes of the matrix and their state (supported, deprecating within 90 days,
    deprecated, preview), with the SDK the lock pins."""
    rows = do.runtime_rows(do.Run.open(settings, lock=False))
    (show.as_json if as_json else show.runtimes_table)(rows)


@cli.command("matrix")
@opt.runtimes()
@opt.json_option
def matrix_command(run: Run, cells: Cells, as_json: bool) -> None:
    """The CI job matrix: a cell per runtime and architecture, its runner, whether it is
    locked."""
    show.result(do.job_matrix(run, cells), show.jobs, as_json)


@cli.command()
@click.option("--check", is_flag=True, help="Fail if the generated tables are stale.")
@click.option("--readme", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
def docs(settings: Settings, check: bool, readme: Path | None) -> None:
    """Write (or check) the generated tables of README.md and docs/emulator.md."""
    run = do.Run.open(settings)
    written = do.docs(run, readme, check=check)
    readme = readme or run.matrix.path.parent / "README.md"
    show.lines([f"{readme}: runtime tables are up to date"] if check else map(str, written))


@cli.command()
@click.argument("runtime_ids", metavar="[RUNTIMES]...", nargs=-1)
@click.option("--check", is_flag=True, help="Fail, naming the files, if dockerfiles/ is stale.")
@click.option("--contexts", is_flag=True, help="Render build contexts (with inputs) into --work.")
@opt.arch_option
@opt.deprecated_option
@click.pass_obj
def render(
    settings: Settings, runtime_ids: tuple[str, ...], check: bool, contexts: bool,
    arches: tuple[str, ...], include_deprecated: bool,
) -> None:  # fmt: skip
    """Render dockerfiles/ (committed) from the templates, or check it."""
    run, cells = opt.selected(settings, runtime_ids, include_deprecated, arches)
    if contexts:
        show.lines(str(path) for path in do.render_contexts(run, cells))
    elif runtime_ids or arches:
        raise UsageError("runtimes and --arch only go with --contexts")
    else:
        written, count = do.dockerfiles(run, check=check)
        show.lines([f"dockerfiles/ is up to date ({count} files)"] if check else written)
