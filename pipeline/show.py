"""The one renderer: what the conductor returns, as lines on stdout (tab-separated, for scripts)
or as tables and progress on stderr (for people). Nothing here decides anything; the command
line (pipeline/cli) parses, calls the conductor and hands its results here."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import log
from .versions import REGISTRY_NAMES

if TYPE_CHECKING:
    from .orchestrate.cells import BuildSummary, ConformanceSummary
    from .orchestrate.freshness import Freshness, RefreshReport, UpgradeReport
    from .orchestrate.release import RebuildSummary
    from .outdated import OutdatedReport
    from .publish.report import PublishReport
    from .upstream import InputsReport


def lines(items: Iterable[str]) -> None:
    for line in items:
        click.echo(line)


def as_json(value: Any, *, compact: bool = False) -> None:
    click.echo(json.dumps(value, separators=(",", ":")) if compact else json.dumps(value, indent=2))


def result(value: Any, people: Callable[[Any], None], json_wanted: bool) -> None:
    """``value`` as JSON on stdout (its ``as_json()``), or for people through ``people``."""
    if json_wanted:
        as_json(value.as_json())
    else:
        people(value)


def _table(*columns: str, title: str | None = None) -> Table:
    table = Table(title=title, box=None, pad_edge=False)
    for column in columns:
        table.add_column(column)
    return table


def runtimes_table(rows: Sequence[dict[str, Any]]) -> None:
    table = _table("identifier", "name", "OS", "architectures", "SDK", "deprecation", "state")
    styles = {"supported": "green", "deprecating": "yellow", "deprecated": "red", "preview": "cyan"}
    for r in rows:
        table.add_row(
            r["id"], r["name"], r["os_name"], ", ".join(r["architectures"]), r["sdk"] or "",
            r["deprecation"] or "", f"[{styles[r['state']]}]{r['state']}[/]",
        )  # fmt: skip
    Console(highlight=False, emoji=False).print(table)  # stdout: the command's output


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


def outdated(report: Freshness) -> None:
    """The images, then the pinned inputs."""
    if report.images is not None:
        outdated_images(report.images)
    if report.inputs is not None:
        outdated_inputs(report.inputs)


def outdated_images(report: OutdatedReport) -> None:
    """One line per image, then one per package with a newer version."""
    for image in report.images:
        count = f": {len(image.upgrades)} package(s) with a newer version"
        detail = count if image.upgrades else (f": {image.note}" if image.note else "")
        lines([f"{image.runtime}/{image.arch}\t{image.state}{detail}"])
        lines(f"  {u.line()}" for u in image.upgrades)


def _runtimes(names: Sequence[str]) -> str:
    return ", ".join(names)


def outdated_inputs(report: InputsReport) -> None:
    """``inputs`` and how many pins are behind, one line per pin with a newer release
    (``name  pinned → newest  (registry: runtimes)``); then one line per registry that did
    not answer, and one per host whose releases are not read here."""
    checked = [i for i in report.inputs if i.state != "not checked"]
    behind = report.outdated
    state = f"outdated: {len(behind)} of {len(checked)}" if behind else f"current: {len(checked)}"
    out = [f"inputs\t{state} pinned input(s) checked against their registry"]
    for item in behind:
        bound = f", below {item.below}" if item.below else ""
        out.append(
            f"  {item.name}\t{item.pinned} → {item.newest}\t"
            f"({item.registry}{bound}: {_runtimes(item.runtimes)})"
        )
    for why, names in report.unreachable.items():
        out.append(f"inputs\tnot checked: {why}: {', '.join(names)}; checked where it answers")
    for item in report.inputs:
        if item.state == "not checked" and not any(
            item.name in n for n in report.unreachable.values()
        ):
            out.append(f"inputs\tnot checked: {item.name}: {item.note}")
    for package, runtimes in report.unlocked.items():
        out.append(
            f"inputs\tnot checked: {package} for {_runtimes(runtimes)}: the lock pins it there "
            "once `lambda-images lock` runs"
        )
    for host in report.unwatched:
        out.append(
            f"inputs\tnot watched: {', '.join(host.inputs)} ({host.host}: no release listing "
            "is read there)"
        )
    lines(out)


def upgrade(report: UpgradeReport) -> None:
    """One line per pin moved (``name  old → new  (registry: runtimes)``), then the files."""
    out = [
        f"{m.name}\t{m.old} → {m.new}\t({REGISTRY_NAMES[m.kind]}: {_runtimes(m.runtimes)})"
        for m in report.moved
    ]
    out += [f"{name}\tnot checked: {why}" for name, why in report.not_checked.items()]
    if report.moved:
        out += [f"written: {name}" for name in report.written]
    else:
        out += [
            f"every pin is at its newest release: nothing written ({len(report.current)} current)"
        ]
    lines(out)


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
    table = _table("image", "arch", "image id", "size", "checks", "snapshot", "build", title=title)
    for c in summary.cells:
        b, r, s = c.build, c.report, c.snapshot
        if b is None or r is None or s is None:
            continue
        packed = sum(layer.compressed_size for layer in s.layers)
        table.add_row(
            b.image, b.architecture, b.image_id[:19], log.human_size(b.size),
            f"{len(r.checks)} passed", f"{len(s.layers)} layers, {log.human_size(packed)}",
            f"{b.seconds:.0f}s",
        )  # fmt: skip
    log.console.print(table)
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
