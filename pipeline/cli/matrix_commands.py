"""Commands about the matrix and the files generated from it: list, matrix, docs, render."""

from __future__ import annotations

from pathlib import Path

import click

from .. import orchestrate as do
from ..errors import UsageError
from ..orchestrate import local
from ..settings import Settings
from . import show
from .group import cli
from .options import arch_option, deprecated_option, json_option, selected


@cli.command("list")
@json_option("Print the matrix as JSON on stdout.")
@click.pass_obj
def list_command(settings: Settings, as_json: bool) -> None:
    """List every runtime of the matrix and its state (supported, deprecating, deprecated)."""
    rows = [show.runtime_row(rt, settings.today) for rt in do.Run.open(settings).matrix.runtimes]
    if as_json:
        show.as_json(rows)
    else:
        show.runtimes_table(rows)


@cli.command()
@click.argument("runtimes", nargs=-1)
@click.option("--check", is_flag=True, help="Fail, naming the files, if dockerfiles/ is stale.")
@click.option(
    "--contexts", is_flag=True, help="Render build contexts (with inputs) into the work dir."
)
@arch_option
@deprecated_option
@click.pass_obj
def render(
    settings: Settings, runtimes: tuple[str, ...], check: bool, contexts: bool,
    arches: tuple[str, ...], include_deprecated: bool,
) -> None:  # fmt: skip
    """Render every runtime x architecture into dockerfiles/ (committed), or check it."""
    if contexts:
        run, cells = selected(settings, runtimes, include_deprecated, arches)
        show.lines(str(path) for path in do.render_contexts(run, cells))
        return
    if runtimes or arches:
        raise UsageError("runtimes and --arch only go with --contexts")
    written, count = local.dockerfiles(do.Run.open(settings), check=check)
    show.lines([f"dockerfiles/ is up to date ({count} files)"] if check else written)


@cli.command()
@click.option("--check", is_flag=True, help="Fail if the generated tables are stale.")
@click.option("--readme", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.pass_obj
def docs(settings: Settings, check: bool, readme: Path | None) -> None:
    """Write the generated tables (README.md's runtimes, docs/emulator.md's checks), or check
    them."""
    run = do.Run.open(settings)
    written = local.docs(run, readme, check=check)
    if check:
        show.lines(
            [f"{readme or run.matrix.path.parent / 'README.md'}: runtime tables are up to date"]
        )
    else:
        show.lines(str(path) for path in written)


@cli.command("matrix")
@click.argument("runtimes", nargs=-1)
@json_option("Print the job matrix as JSON.")
@arch_option
@deprecated_option
@click.pass_obj
def matrix_command(
    settings: Settings, runtimes: tuple[str, ...], as_json: bool, arches: tuple[str, ...],
    include_deprecated: bool,
) -> None:  # fmt: skip
    """The CI job matrix: one entry per runtime x architecture, with its runner label."""
    run, cells = selected(settings, runtimes, include_deprecated, arches)
    jobs = run.matrix.job_matrix(run.matrix.targets(cells.runtimes, cells.arches))
    show.as_json(jobs, compact=not as_json)
