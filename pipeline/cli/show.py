"""The one renderer: what the conductor returns, as lines on stdout (tab-separated, for scripts)
or as tables and progress on stderr (for people). Nothing here decides anything."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import log
from ..matrix import Runtime
from ..orchestrate.refresh import RefreshReport
from ..orchestrate.release import RebuildSummary
from ..publish.report import PublishReport
from ..records import Report


def lines(items: Iterable[str]) -> None:
    for line in items:
        click.echo(line)


def as_json(value: Any, *, compact: bool = False) -> None:
    click.echo(json.dumps(value, separators=(",", ":")) if compact else json.dumps(value, indent=2))


def runtime_row(rt: Runtime, today: dt.date) -> dict[str, Any]:
    return {
        "id": rt.id, "name": rt.name, "family": rt.family.id, "version": rt.version,
        "tag": rt.tag, "os": rt.os.id, "os_name": rt.os.name,
        "architectures": list(rt.architectures), "sdk": rt.sdk,
        "deprecation": rt.deprecation.isoformat() if rt.deprecation else None,
        "state": rt.state(today),
    }  # fmt: skip


def runtimes_table(rows: Sequence[dict[str, Any]]) -> None:
    table = Table(box=None, pad_edge=False)
    for column in ("identifier", "name", "OS", "architectures", "SDK", "deprecation", "state"):
        table.add_column(column)
    styles = {"supported": "green", "deprecating": "yellow", "deprecated": "red"}
    for r in rows:
        table.add_row(
            r["id"], r["name"], r["os_name"], ", ".join(r["architectures"]), r["sdk"] or "",
            r["deprecation"] or "", f"[{styles[r['state']]}]{r['state']}[/]",
        )  # fmt: skip
    Console(highlight=False, emoji=False).print(table)


def reports(items: Sequence[Report]) -> None:
    """Each conformance report: pass or FAIL, then a line per check."""
    for report in items:
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
    table = Table(title=f"{summary.runtime} in {summary.seconds:.0f}s", box=None, pad_edge=False)
    for column in ("image", "arch", "image id", "size", "checks", "snapshot", "build"):
        table.add_column(column)
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


def unlocked(items: Sequence[str]) -> None:
    for item in items:
        log.warning(f"unlocked: {item}")
