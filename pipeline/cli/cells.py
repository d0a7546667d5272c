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
def base(run: Run, cells: Cells) -> None:
    """Build (Debian) or pull (Amazon Linux) the OS base images and load them into the engine."""
    show.lines(f"{r.name}\t{r.image_id}\t{r.architecture}" for r in do.make_bases(run, cells))


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
    """Build images: base, render, fetch inputs, docker build, then the conformance tests
    (and, with --out, the snapshot) per architecture."""
    show.result(do.build(run, request), show.cells, as_json)


@cli.command()
@click.option(
    "--cells", "cells_json", required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help='The run\'s cells, {"include": [{"runtime", "arch", …}]} (`lambda-images matrix --json`).',
)  # fmt: skip
@click.argument("folders", nargs=-1, type=click.Path(path_type=Path, file_okay=False))
def plan(cells_json: Path, folders: tuple[Path, ...]) -> None:
    """From the inputs.json the cells left in FOLDERS: what to publish, rebuild, or leave."""
    show.as_json(do.plan(cells_json, folders).as_json(), compact=True)


@cli.command()
@opt.runtimes(required=True)
def snapshot(run: Run, cells: Cells) -> None:
    """Export built images as normalized layer tarballs and lay out their branch content."""
    show.lines(str(folder) for folder in do.snapshot_runtimes(run, cells))


@cli.command()
@opt.runtimes(required=True, arch=False)
@opt.remote_option("Git remote URL (file:///… for a local one).", required=True)
def branch(run: Run, cells: Cells, remote: str) -> None:
    """Commit each runtime's snapshot as one orphan commit and force-push its branch."""
    for rt in cells.runtimes:
        result = do.push_runtime_branch(run, rt, remote)
        show.lines([f"{rt.id}\t{result.commit}\t{'pushed' if result.pushed else 'unchanged'}"])


@cli.command()
@opt.runtimes(required=True, deprecated=False)
@opt.json_option
def test(run: Run, cells: Cells, as_json: bool) -> None:
    """Run Lambda's conformance checks on built images; fails when any check fails."""
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
@click.pass_obj
def lock(
    settings: Settings, names: tuple[str, ...], upgrade: bool, markdown: Path | None,
    include_deprecated: bool,
) -> None:  # fmt: skip
    """Pin every downloadable input by sha256 in runtimes.lock.json (needs the network); those
    that cannot be downloaded from here stay unlocked (null), and are named."""
    if markdown and not upgrade:
        raise click.UsageError("--markdown goes with --upgrade")
    run, cells = opt.selected(settings, () if upgrade else names, include_deprecated)
    if upgrade:
        request = do.UpgradeRequest(runtimes=cells.runtimes, names=names, markdown=markdown)
        return show.upgrade(do.upgrade_pins(run, request))
    summary = do.lock_inputs(run, cells.runtimes)
    show.lines([str(summary.path)])
    show.unlocked(summary.unlocked)
