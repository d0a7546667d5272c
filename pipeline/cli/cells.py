"""Commands that run the cells' stages: base, build, plan, snapshot, branch, test, lock."""

from __future__ import annotations

from pathlib import Path

import click

from .. import orchestrate as do
from ..errors import ConformanceError
from ..oci.registry import RegistryRef
from ..orchestrate import local
from ..settings import Settings
from . import show
from .group import cli
from .options import (
    arch_option,
    deprecated_option,
    folder_option,
    json_option,
    registry_option,
    remote_option,
    selected,
)


@cli.command()
@click.argument("runtimes", nargs=-1)
@arch_option
@deprecated_option
@click.pass_obj
def base(
    settings: Settings, runtimes: tuple[str, ...], arches: tuple[str, ...], include_deprecated: bool
) -> None:
    """Build (Debian) or pull (Amazon Linux) the OS base images and load them into the engine."""
    run, cells = selected(settings, runtimes, include_deprecated, arches)
    show.lines(f"{r.name}\t{r.image_id}\t{r.architecture}" for r in do.make_bases(run, cells))


@cli.command()
@click.argument("runtimes", nargs=-1, required=True)
@arch_option
@click.option("--force", is_flag=True, help="Rebuild even if the inputs are unchanged.")
@click.option("--no-cache", is_flag=True, help="Rerun every build step (fresh packages).")
@deprecated_option
@folder_option(
    "--out", "Also snapshot each cell and copy its records and layers to OUT/<runtime>/<arch>/."
)
@remote_option(
    "Skip a cell whose input digest equals the one on its runtime's branch there.",
    name="--published",
)
@registry_option(
    "Skip a cell only when the image published there (<tag>-<arch>) carries its input digest "
    "(with --published: only when the branch and the registry agree).",
)
@json_option("Print the cells as JSON on stdout.")
@click.pass_obj
def build(
    settings: Settings, runtimes: tuple[str, ...], arches: tuple[str, ...], force: bool,
    no_cache: bool, include_deprecated: bool, out: Path | None, published: str | None,
    registry: RegistryRef | None, as_json: bool,
) -> None:  # fmt: skip
    """Build images: base, render, fetch inputs, docker build, then the conformance tests
    (and, with --out, the snapshot) per architecture."""
    run, cells = selected(settings, runtimes, include_deprecated, arches)
    request = do.BuildRequest(
        cells=cells, force=force, no_cache=no_cache, out=out, published=published,
        published_registry=registry,
    )  # fmt: skip
    summary = do.build(run, request)
    if as_json:
        show.as_json(summary.as_json())
    else:
        show.lines(c.line() for c in summary.cells)


@cli.command()
@click.option(
    "--cells", "cells_json", required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help='The run\'s cells, {"include": [{"runtime", "arch", …}]} (`lambda-images matrix --json`).',
)  # fmt: skip
@click.argument("folders", nargs=-1, type=click.Path(path_type=Path, file_okay=False))
def plan(cells_json: Path, folders: tuple[Path, ...]) -> None:
    """From the inputs.json the cells left in FOLDERS: what to publish, rebuild, or leave."""
    show.as_json(local.plan(cells_json, folders).as_json(), compact=True)


@cli.command()
@click.argument("runtimes", nargs=-1, required=True)
@arch_option
@deprecated_option
@click.pass_obj
def snapshot(
    settings: Settings, runtimes: tuple[str, ...], arches: tuple[str, ...], include_deprecated: bool
) -> None:
    """Export built images as normalized layer tarballs and lay out their branch content."""
    run, cells = selected(settings, runtimes, include_deprecated, arches)
    show.lines(str(folder) for folder in do.snapshot_runtimes(run, cells))


@cli.command()
@click.argument("runtimes", nargs=-1, required=True)
@remote_option("Git remote URL (file:///… for a local one).", required=True)
@deprecated_option
@click.pass_obj
def branch(
    settings: Settings, runtimes: tuple[str, ...], git_remote: str, include_deprecated: bool
) -> None:
    """Commit each runtime's snapshot as one orphan commit and force-push its branch."""
    run, cells = selected(settings, runtimes, include_deprecated)
    for rt in cells.runtimes:
        result = do.push_runtime_branch(run, rt, git_remote)
        show.lines([f"{rt.id}\t{result.commit}\t{'pushed' if result.pushed else 'unchanged'}"])


@cli.command()
@click.argument("runtimes", nargs=-1, required=True)
@arch_option
@json_option("Print the reports as JSON on stdout.")
@click.pass_obj
def test(
    settings: Settings, runtimes: tuple[str, ...], arches: tuple[str, ...], as_json: bool
) -> None:
    """Run Lambda's conformance checks on built images; fails when any check fails."""
    run, cells = selected(settings, runtimes, arches=arches)
    reports, failed = do.test_targets(run, cells)
    if as_json:
        show.as_json([r.to_json() for r in reports])
    else:
        show.reports(reports)
    if failed:
        raise ConformanceError(f"conformance checks failed for {', '.join(failed)}")


@cli.command()
@click.argument("runtimes", nargs=-1)
@deprecated_option
@click.pass_obj
def lock(settings: Settings, runtimes: tuple[str, ...], include_deprecated: bool) -> None:
    """Pin every downloadable input by sha256 in runtimes.lock.json (needs the network).

    Inputs that cannot be downloaded from here stay unlocked (null), and are named.
    """
    run, cells = selected(settings, runtimes, include_deprecated)
    summary = do.lock_inputs(run, cells.runtimes)
    show.lines([str(summary.path)])
    show.unlocked(summary.unlocked)
