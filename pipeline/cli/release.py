"""Commands about published images: publish, rebuild (which may publish), outdated, refresh."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import click

from .. import orchestrate as do
from .. import show
from . import options as opt
from .group import cli

if TYPE_CHECKING:
    from ..orchestrate import OutdatedRequest, PublishRequest, RebuildRequest, RefreshRequest, Run


@cli.command("publish")
@opt.runtimes(arch=False, deprecated=False)
@opt.release_options
@opt.json_option
@opt.request(do.PublishRequest)
def publish_command(run: Run, request: PublishRequest, as_json: bool) -> None:
    """Push snapshots to a registry (and branches), all or nothing per runtime."""
    report = do.publish(run, request)
    show.result(report, show.publish, as_json)
    show.job_summary(run.settings, show.publish_markdown(report))
    report.raise_for_failure()


@cli.command()
@opt.runtimes(one=True)
@opt.remote_option("Force-push the runtime's branch here (file:///… works).")
@opt.force_options
@opt.json_option
@click.option("--push", is_flag=True, help="Then publish it to --registry (and --git-remote).")
@opt.registry_option("REGISTRY/NAMESPACE for --push.")
@opt.request(do.RebuildRequest)
def rebuild(run: Run, request: RebuildRequest, as_json: bool, push: bool) -> None:
    """Every stage for one runtime, from its base to its branch (or --push)."""
    if push and not request.registry:
        raise click.UsageError("--push needs --registry REGISTRY/NAMESPACE")
    summary = do.rebuild(run, request if push else dataclasses.replace(request, registry=None))
    if summary.publish is not None and not summary.publish.ok:
        show.publish(summary.publish)  # the publish's lines, then its error
        summary.publish.raise_for_failure()
    show.result(summary, show.rebuild, as_json)


@cli.command()
@opt.runtimes()
@opt.json_option
@opt.registry_option("Check the images published there (<tag>-<arch>), not the engine's.")
@click.option(
    "--only", type=click.Choice(["images", "inputs"]), help="Only the images (works offline), or "
    "only the pinned inputs against their registries (needs no engine). Default: both.",
)  # fmt: skip
@opt.request(do.OutdatedRequest)
def outdated(run: Run, request: OutdatedRequest, as_json: bool) -> None:
    """Newer Debian packages in built (or published) images, newer releases of pinned inputs.

    Images: their archives (suite, -updates, -security); inputs: their registries (PyPI, npm,
    Maven, Go modules, Node.js). Fails when any has a newer one."""
    report = do.outdated(run, request)
    show.result(report, show.outdated, as_json)
    report.raise_for_failure()


@cli.command()
@opt.runtimes(arch=False, deprecated=False)
@opt.release_options
@opt.json_option
@opt.request(do.RefreshRequest)
def refresh(run: Run, request: RefreshRequest, as_json: bool) -> None:
    """Rebuild and republish exactly the runtimes whose published packages are behind.

    What a schedule runs: `outdated --registry` on the published images, then rebuild and
    publish those runtimes; the others are not touched."""
    summary = do.refresh(run, request)
    show.result(summary, show.refresh, as_json)
    if summary.publish is not None:
        show.job_summary(run.settings, show.publish_markdown(summary.publish))
    summary.raise_for_failure()
