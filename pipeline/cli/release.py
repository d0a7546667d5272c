"""Commands about published images: publish, rebuild (which may publish), outdated, refresh."""

from __future__ import annotations

from pathlib import Path

import click

from .. import orchestrate as do
from ..errors import OutdatedError, PublishError
from ..oci.registry import RegistryRef
from ..publish.report import PublishReport
from ..settings import Settings
from . import show
from .group import cli
from .options import (
    arch_option,
    deprecated_option,
    json_option,
    mirror_option,
    registry_option,
    remote_option,
    report_option,
    selected,
)


def _published(report: PublishReport) -> None:
    """A publish's lines; PublishError naming the runtimes that failed on the primary."""
    show.publish(report)
    failed = [r.runtime for r in report.runtimes if r.status == "failed"]
    if failed:
        raise PublishError(f"not published: {', '.join(failed)} (reasons above and in --report)")


@cli.command("publish")
@click.argument("runtimes", nargs=-1)
@registry_option("REGISTRY/NAMESPACE, e.g. public.ecr.aws/lambda.", required=True)
@remote_option("Also force-push each runtime's branch here.")
@report_option("JSON summary.")
@mirror_option(
    "Also push the same digests and tags here (repeatable); a failing mirror is reported."
)
@click.pass_obj
def publish_command(
    settings: Settings, runtimes: tuple[str, ...], registry: RegistryRef, git_remote: str | None,
    report: Path | None, mirrors: tuple[RegistryRef, ...],
) -> None:  # fmt: skip
    """Push snapshots from the work directory to a registry (and branches); all-or-nothing
    per runtime."""
    run, cells = selected(settings, runtimes)
    request = do.PublishRequest(
        runtimes=cells.runtimes, registry=registry, mirrors=mirrors, remote=git_remote,
        report=report,
    )  # fmt: skip
    _published(do.publish(run, request))


@cli.command()
@click.argument("runtime")
@arch_option
@remote_option("Force-push the runtime's branch here (file:///… works).")
@click.option("--no-cache", is_flag=True, help="Rerun every build step (fresh packages).")
@json_option("Print the summary as JSON on stdout.")
@click.option("--force", is_flag=True, help="Rebuild even if the inputs are unchanged.")
@click.option("--push", is_flag=True, help="Then publish it to --registry (and --git-remote).")
@registry_option("REGISTRY/NAMESPACE for --push.")
@deprecated_option
@click.pass_obj
def rebuild(
    settings: Settings, runtime: str, arches: tuple[str, ...], git_remote: str | None,
    no_cache: bool, as_json: bool, force: bool, push: bool, registry: RegistryRef | None,
    include_deprecated: bool,
) -> None:  # fmt: skip
    """Every stage for one runtime: base, render, build, test, snapshot, branch (or --push)."""
    if push and not registry:
        raise click.UsageError("--push needs --registry REGISTRY/NAMESPACE")
    run, cells = selected(settings, [runtime], include_deprecated)
    request = do.RebuildRequest(
        runtime=cells.runtimes[0], arches=arches, force=force, no_cache=no_cache,
        remote=git_remote, registry=registry if push else None,
    )  # fmt: skip
    summary = do.rebuild(run, request)
    if summary.publish is not None and not summary.publish.ok:
        _published(summary.publish)  # the publish's lines, then its error
    if as_json:
        show.as_json(summary.as_json())
    else:
        show.rebuild(summary)


@cli.command()
@click.argument("runtimes", nargs=-1)
@arch_option
@json_option("Print the findings as JSON on stdout.")
@registry_option(
    "Check the images published to REGISTRY/NAMESPACE (their <tag>-<arch> tags) instead "
    "of the ones in the engine."
)
@deprecated_option
@click.pass_obj
def outdated(
    settings: Settings, runtimes: tuple[str, ...], arches: tuple[str, ...], as_json: bool,
    registry: RegistryRef | None, include_deprecated: bool,
) -> None:  # fmt: skip
    """Installed packages of Debian images with a newer version in their OS archives (suite,
    -updates, -security): the built images, or with --registry the published ones; fails when
    any has one."""
    run, cells = selected(settings, runtimes, include_deprecated, arches)
    report = do.outdated_images(run, do.OutdatedRequest(cells=cells, registry=registry))
    if as_json:
        show.as_json(report.as_json())
    else:
        show.lines(report.lines())
    if report.outdated:
        names = ", ".join(f"{i.runtime}/{i.arch}" for i in report.outdated)
        raise OutdatedError(f"newer packages in the archives for {names}; rebuild them")


@cli.command()
@click.argument("runtimes", nargs=-1)
@registry_option(
    "REGISTRY/NAMESPACE whose published images are checked, and where rebuilt ones go.",
    required=True,
)
@remote_option("Also force-push each rebuilt runtime's branch.")
@report_option("JSON summary: what was behind, what was rebuilt, what publishing did.")
@mirror_option("Also push the rebuilt runtimes here (repeatable), as publish --mirror does.")
@json_option("Print the summary as JSON on stdout.")
@click.pass_obj
def refresh(
    settings: Settings, runtimes: tuple[str, ...], registry: RegistryRef, git_remote: str | None,
    report: Path | None, mirrors: tuple[RegistryRef, ...], as_json: bool,
) -> None:  # fmt: skip
    """What a schedule runs: `outdated --registry` on the published images, then rebuild and
    publish exactly the runtimes with a package behind; the others are not touched."""
    run, cells = selected(settings, runtimes)
    request = do.RefreshRequest(
        runtimes=cells.runtimes, registry=registry, mirrors=mirrors, remote=git_remote,
        report=report,
    )  # fmt: skip
    summary = do.refresh(run, request)
    if as_json:
        show.as_json(summary.as_json())
    else:
        show.refresh(summary)
    if summary.failed:
        names = ", ".join(summary.failed)
        raise PublishError(f"not refreshed: {names} (reasons above and in --report)")
