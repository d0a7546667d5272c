"""The one renderer: what the conductor returns, as lines on stdout (tab-separated, for scripts),
as JSON (``--json``), as tables and progress on stderr (for people), and as Markdown for a CI job
summary (markdown.py). Nothing here decides anything; the command line (pipeline/cli) parses,
calls the conductor and hands its results here."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.text import Text

from .. import log
from .freshness import outdated, outdated_images, outdated_inputs, upgrade
from .markdown import job_summary, plan_markdown, publish_markdown
from .out import lines
from .tables import print_table
from .tables import table as _table

if TYPE_CHECKING:
    from ..base import BaseRecord
    from ..incremental import Plan
    from ..orchestrate.cells import BuildSummary, ConformanceSummary, LockSummary, SnapshotSummary
    from ..orchestrate.freshness import RefreshReport
    from ..orchestrate.release import RebuildSummary
    from ..publish.report import PublishReport


__all__ = [
    "job_summary", "lines", "outdated", "outdated_images", "outdated_inputs", "plan_markdown",
    "publish_markdown", "upgrade",
]  # fmt: skip


def as_json(value: Any, *, compact: bool = False) -> None:
    separators = (",", ":") if compact else None
    click.echo(json.dumps(_data(value), indent=None if compact else 2, separators=separators))


def _data(value: Any) -> Any:
    """A result as JSON data: its ``as_json()``, a record's fields, paths as strings."""
    if hasattr(value, "as_json"):
        return value.as_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _data(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_data(v) for v in value]
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def result(value: Any, people: Callable[[Any], None], json_wanted: bool) -> None:
    """``value`` as JSON on stdout (``--json``), or for people through ``people``."""
    if json_wanted:
        as_json(value)
    else:
        people(value)


def runtimes_table(rows: Sequence[dict[str, Any]]) -> None:
    table = _table(
        "identifier", "state", "deprecation", "architectures", "OS", "name", "SDK", whole=4
    )
    styles = {"supported": "green", "deprecating": "yellow", "deprecated": "red", "preview": "cyan"}
    for r in rows:
        table.add_row(
            r["id"], Text(r["state"], style=styles[r["state"]]), r["deprecation"] or "",
            " ".join(r["architectures"]), r["os_name"], r["name"], r["sdk"] or "",
        )  # fmt: skip
    print_table(table)


def jobs(matrix: dict[str, list[dict[str, Any]]]) -> None:
    """The CI job matrix: a row per cell, and what is unlocked where a cell cannot be built."""
    table = _table("runtime", "arch", "runner", "inputs", whole=3)
    for job in matrix["include"]:
        locked = Text("locked", "green") if job["locked"] else Text(f"unlocked: {job['unlocked']}")
        table.add_row(job["runtime"], job["arch"], job["runner"], locked)
    print_table(table)


def bases(records: Sequence[BaseRecord]) -> None:
    lines(f"{r.name}\t{r.image_id}\t{r.architecture}" for r in records)


def snapshots(summary: SnapshotSummary) -> None:
    """Each runtime's branch content folder."""
    lines(str(folder) for folder in summary.branches.values())


def branches(results: Sequence[Any]) -> None:
    """Each runtime's branch (branch.BranchResult): its commit, and whether it was pushed."""
    lines(f"{r.runtime}\t{r.commit}\t{'pushed' if r.pushed else 'unchanged'}" for r in results)


def locked(summary: LockSummary) -> None:
    lines([str(summary.path)])
    unlocked(summary.unlocked)


def plan(decided: Plan) -> None:
    """A row per cell and its state; then what becomes of each runtime."""
    styles = {"built": "green", "unchanged": "", "failed": "red", "unlocked": "yellow"}
    table = _table("runtime", "arch", "state", whole=3)
    for cell in decided.cells:
        table.add_row(cell["runtime"], cell["arch"], Text(cell["state"], styles[cell["state"]]))
    print_table(table)
    for name, runtimes in (("publish", decided.publish), ("not published", decided.incomplete),
                           ("skipped (unlocked)", decided.unlocked)):  # fmt: skip
        lines([f"{name}: {' '.join(runtimes)}"] if runtimes else [])


def cells(summary: BuildSummary) -> None:
    """One line per cell: image, image id (- when unchanged from the published one), platform
    architecture, and what happened to it."""
    for c in summary.cells:
        image_id = c.build.image_id if c.build else "-"
        click.echo(f"{c.target.image_tag}\t{image_id}\t{c.target.arch.docker}\t{c.state}")


def reports(summary: ConformanceSummary) -> None:
    """Each conformance report: pass or FAIL, then a line per check."""
    for report in summary.reports:
        state = "[green]pass[/]" if report.ok else "[red]FAIL[/]"
        log.console.print(f"{state} [bold]{report.image}[/] ({report.arch}, {report.seconds:.0f}s)")
        for c in report.checks:
            mark = "[green]ok[/]  " if c.ok else "[red]fail[/]"
            log.console.print(f"  {mark} {c.name:<17} {escape(c.message)}")


def publish(report: PublishReport) -> None:
    """One line per runtime on stdout: runtime, status, index digest or reason; then one line
    per runtime a mirror is behind on."""
    for r in report.runtimes:
        print(f"{r.runtime}\t{r.status}\t{r.index or r.reason}", flush=True)
    for mirror, runtimes in report.mirrors_behind.items():
        for runtime, reason in runtimes.items():
            print(f"{runtime}\tbehind on mirror {mirror}\t{reason}", flush=True)


def refresh(report: RefreshReport) -> None:
    """Per affected runtime: rebuilt or failed, then its packages that were behind."""
    out = []
    for rt in report.affected:
        state = "rebuilt" if rt in report.rebuilt else f"not refreshed: {report.failed.get(rt)}"
        out.append(f"{rt}\t{state}")
        for image in report.behind(rt):
            out += [f"  {image.arch}\t{u.line()}" for u in image.upgrades]
    lines(out or ["every published image is current: nothing to rebuild"])
    if report.publish is not None:
        publish(report.publish)


def rebuild(summary: RebuildSummary) -> None:
    title = f"{summary.runtime} in {summary.seconds:.0f}s"
    table = _table(
        "image", "arch", "build", "checks", "size", "snapshot", "image id", whole=2, title=title
    )
    for c in summary.cells:
        b, r, s = c.build, c.report, c.snapshot
        if b is None or r is None or s is None:
            continue
        packed = sum(layer.compressed_size for layer in s.layers)
        table.add_row(
            b.image, b.architecture, f"{b.seconds:.0f}s", f"{len(r.checks)} passed",
            log.human_size(b.size), f"{len(s.layers)} layers, {log.human_size(packed)}",
            b.image_id.removeprefix("sha256:")[:12],
        )  # fmt: skip
    print_table(table, stderr=True)
    log.info(f"branch content: {summary.branch_dir}")
    if summary.branch:
        state = "pushed" if summary.branch.pushed else "unchanged, not pushed"
        where = f"{summary.branch.remote} {summary.branch.commit[:12]}"
        log.info(f"branch {summary.runtime} → {where} ({state})")
    if summary.publish:
        publish(summary.publish)


def serving(url: str) -> None:
    """The invoke endpoint's URL on stdout as soon as it answers, and how to call it."""
    print(url, flush=True)
    log.info(f"invoke with: curl -XPOST {url} -d '{{}}'")


def unlocked(items: Sequence[str]) -> None:
    for item in items:
        log.warning(f"unlocked: {item}")
