"""Outdated images and the scheduled refresh: what the built or published Debian images lack
from their archives, and rebuilding and republishing exactly the runtimes that lack something."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .. import log
from ..errors import LambdaImagesError, PublishError, failure_reason
from ..outdated import ImageReport, OutdatedReport, check_published, check_targets
from ..publish.report import PublishReport
from ..workdir import write_json
from .cells import locked_targets, run_cell
from .release import publish
from .requests import Cells, OutdatedRequest, PublishRequest, RefreshRequest
from .run import Run


def outdated_images(run: Run, request: OutdatedRequest) -> OutdatedReport:
    """Which installed packages of the Debian images have a newer version now: the images
    built into the engine, or with a registry the published ones."""
    targets = run.matrix.targets(request.cells.runtimes, request.cells.arches)
    cache = run.settings.cache / "apt"
    if request.registry is None:
        return check_targets(run.client, targets, cache)
    client = run.registry(request.registry)
    try:
        return check_published(client, request.registry, targets, cache)
    finally:
        client.session.close()


@dataclass(kw_only=True)
class RefreshReport:
    """A scheduled refresh: what the published images lacked, which runtimes were rebuilt for
    it (and why), which could not be, and what publishing them did."""

    registry: str
    checked: OutdatedReport | None = None  # None: the check itself did not finish
    rebuilt: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # runtime → why it was not refreshed
    publish: PublishReport | None = None
    error: str | None = None  # what stopped the refresh outside any one runtime, if anything

    def behind(self, runtime: str) -> list[ImageReport]:
        outdated = self.checked.outdated if self.checked is not None else []
        return [i for i in outdated if i.runtime == runtime]

    @property
    def affected(self) -> list[str]:
        """The runtimes with a published image behind its archives, in matrix order."""
        outdated = self.checked.outdated if self.checked is not None else []
        return list(dict.fromkeys(i.runtime for i in outdated))

    def raise_for_failure(self) -> None:
        """PublishError naming the runtimes that could not be rebuilt or published."""
        if self.failed:
            names = ", ".join(self.failed)
            raise PublishError(f"not refreshed: {names} (reasons above and in --report)")

    def as_json(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "ok": self.error is None
            and not self.failed
            and (self.publish is None or self.publish.ok),
            "error": self.error,
            "rebuilt": {
                rt: {i.arch: [dataclasses.asdict(u) for u in i.upgrades] for i in self.behind(rt)}
                for rt in self.rebuilt
            },
            "failed": self.failed,
            "checked": None if self.checked is None else self.checked.as_json(),
            "publish": None if self.publish is None else self.publish.as_json(),
        }


def refresh(run: Run, request: RefreshRequest) -> RefreshReport:
    """What a schedule runs: check the published images of the request's runtimes against their
    OS archives, rebuild exactly the runtimes with a package behind (every architecture, since a
    runtime is published whole; the archives' new state is a new base, so the rebuild picks
    the new versions up) and publish those; the others are not touched. A runtime whose
    rebuild or publish fails is not published, and the others go on; the report is written
    even then, and names it in ``failed``. The report (``--report``) is written however the
    refresh ends, a check that could not be made included (``error``)."""
    by_id = {rt.id: rt for rt in request.runtimes}
    report = RefreshReport(registry=str(request.registry))
    try:
        report.checked = outdated_images(
            run, OutdatedRequest(cells=Cells(runtimes=request.runtimes), registry=request.registry)
        )
        for runtime_id in report.affected:
            why = ", ".join(
                f"{u.package} {u.installed} → {u.available}"
                for image in report.behind(runtime_id)
                for u in image.upgrades
            )
            log.info(f"{runtime_id}: rebuilding for {why}")
            try:
                for target in locked_targets(run, [by_id[runtime_id]]):
                    run_cell(run, target, snapshot=True)
            except LambdaImagesError as exc:
                report.failed[runtime_id] = failure_reason(exc)
                log.error(f"{runtime_id}: not rebuilt: {report.failed[runtime_id]}")
                continue
            report.rebuilt.append(runtime_id)
        if report.rebuilt:
            report.publish = publish(
                run,
                PublishRequest(
                    runtimes=tuple(by_id[rt] for rt in report.rebuilt), registry=request.registry,
                    mirrors=request.mirrors, remote=request.remote,
                ),
            )  # fmt: skip
            for r in report.publish.runtimes:
                if r.status == "failed":
                    report.failed[r.runtime] = f"not published: {r.reason}"
                    report.rebuilt.remove(r.runtime)
    except BaseException as exc:  # the report says why it stopped, then the error goes on
        report.error = failure_reason(exc) if isinstance(exc, Exception) else "interrupted"
        raise
    finally:
        if request.report is not None:
            try:
                write_json(request.report, report.as_json())
            except OSError as exc:
                msg = f"--report {request.report}: cannot write the report ({exc.strerror})"
                raise PublishError(msg) from None
    return report
