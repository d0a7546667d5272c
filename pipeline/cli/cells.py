"""Commands that run the cells' stages: base, build, plan, snapshot, branch, test, lock."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from .. import orchestrate as do
from .. import show
from ..settings import Settings
from . import options as opt
from .group import cli

if TYPE_CHECKING:
    from ..orchestrate import BuildRequest, Cells, Run


@cli.command()
@opt.runtimes()
@opt.json_option
def base(run: Run, cells: Cells, as_json: bool) -> None:
    """Build (Debian) or pull (Amazon Linux) the OS base images into the engine."""
    show.result(do.make_bases(run, cells), show.bases, as_json)


@cli.command()
@opt.runtimes(required=True)
@opt.force_options
@opt.folder_option("--out", "Also snapshot each cell and copy it to OUT/<runtime>/<arch>/.")
@opt.remote_option("Skip a cell whose input digest its branch there records.", name="--published")
@opt.registry_option(
    "Skip a cell only when its published <tag>-<arch> image there carries its input digest "
    "(with --published: only when both agree).",
    dest="published_registry",
)
@opt.json_option
@opt.request(do.BuildRequest)
def build(run: Run, request: BuildRequest, as_json: bool) -> None:
    """Build, test and (with --out) snapshot cells; unchanged ones are skipped."""
    show.result(do.build(run, request), show.cells, as_json)


@cli.command()
@click.option(
    "--cells", "cells_json", required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help='The run\'s cells, {"include": [{"runtime", "arch", …}]} (`lambda-images matrix --json`).',
)  # fmt: skip
@click.argument("folders", nargs=-1, type=click.Path(path_type=Path, file_okay=False))
@opt.json_option
@click.pass_obj
def plan(settings: Settings, cells_json: Path, folders: tuple[Path, ...], as_json: bool) -> None:
    """What to publish, from the records the cells left in FOLDERS (and the job summary)."""
    result = do.plan(cells_json, folders)
    show.result(result, show.plan, as_json)
    show.job_summary(settings, show.plan_markdown(result))


@cli.command()
@opt.runtimes(required=True)
@opt.json_option
def snapshot(run: Run, cells: Cells, as_json: bool) -> None:
    """Export built images as layer tarballs and lay out their branch content."""
    show.result(do.snapshot_runtimes(run, cells), show.snapshots, as_json)


@cli.command()
@opt.runtimes(required=True, arch=False)
@opt.remote_option("Git remote URL (file:///… for a local one).", required=True)
@opt.json_option
def branch(run: Run, cells: Cells, remote: str, as_json: bool) -> None:
    """Commit each runtime's snapshot as one orphan commit and force-push its branch."""
    pushed = [do.push_runtime_branch(run, rt, remote) for rt in cells.runtimes]
    show.result(pushed, show.branches, as_json)


@cli.command()
@opt.runtimes(required=True, deprecated=False)
@opt.json_option
def test(run: Run, cells: Cells, as_json: bool) -> None:
    """Lambda's conformance checks on built images; fails when any check fails."""
    summary = do.test_targets(run, cells)
    show.result(summary, show.reports, as_json)
    summary.raise_for_failure()


@cli.command()
@click.argument("names", metavar="[RUNTIMES | --upgrade INPUTS]...", nargs=-1)
@click.option(
    "--upgrade", is_flag=True, help="NAMES are inputs (none: all): move each pin to the newest "
    "release its registry lists, then lock it and check its hash there.",
)  # fmt: skip
@click.option(
    "--markdown", type=click.Path(path_type=Path, dir_okay=False), callback=opt.written_file,
    help="With --upgrade: also write what moved (old → new) as markdown here.",
)  # fmt: skip
@opt.deprecated_option
@opt.json_option
@click.pass_obj
def lock(
    settings: Settings, names: tuple[str, ...], upgrade: bool, markdown: Path | None,
    include_deprecated: bool, as_json: bool,
) -> None:  # fmt: skip
    """Pin every downloadable input by sha256 in runtimes.lock.json (needs the network).

    Those that cannot be downloaded from here stay unlocked (null), and are named. With
    --upgrade, the pins move to the newest releases their registries list first."""
    if markdown and not upgrade:
        raise click.UsageError("--markdown goes with --upgrade")
    run, cells = opt.selected(settings, () if upgrade else names, include_deprecated)
    if upgrade:
        request = do.UpgradeRequest(runtimes=cells.runtimes, names=names, markdown=markdown)
        return show.result(do.upgrade_pins(run, request), show.upgrade, as_json)
    show.result(do.lock_inputs(run, cells.runtimes), show.locked, as_json)
