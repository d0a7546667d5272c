"""Results as GitHub-flavoured Markdown for a CI job summary (``$GITHUB_STEP_SUMMARY``, which
GitHub Actions shows on the run's page): the plan's cells and what the publish did.

Every value a table cell holds is one code span with its pipes escaped (text.markdown_code), so
that a registry's error or a reason cannot add a row, a column or a link."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..text import markdown_code

if TYPE_CHECKING:
    from ..incremental import Plan
    from ..publish.report import PublishReport
    from ..settings import Settings

# What each state of a cell means on the summary.
CELL_STATES = {
    "built": "built",
    "unchanged": "unchanged (as published)",
    "failed": "**failed**",
    "unlocked": "skipped: unlocked (`lambda-images lock` pins its inputs)",
}


def _cell(text: str) -> str:
    return markdown_code(text).replace("|", "\\|")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    return out + [f"| {' | '.join(row)} |" for row in rows]


def plan_markdown(plan: Plan) -> str:
    """Every cell of the run and its state, then what becomes of each runtime."""
    out = ["### Cells", ""]
    rows = [(_cell(c["runtime"]), _cell(c["arch"]), CELL_STATES[c["state"]]) for c in plan.cells]
    out += _table(("runtime", "arch", "state"), rows)
    counts = {state: sum(c["state"] == state for c in plan.cells) for state in CELL_STATES}
    out += ["", ", ".join(f"{n} {state}" for state, n in counts.items())]
    for title, runtimes in (("To publish", plan.publish), ("Unchanged", plan.unchanged),
                            ("Not published: a cell failed", plan.incomplete),
                            ("Skipped: a cell is unlocked", plan.unlocked)):  # fmt: skip
        if runtimes:
            out += ["", f"{title}: {', '.join(map(_cell, runtimes))}"]
    return "\n".join(out) + "\n"


def publish_markdown(report: PublishReport) -> str:
    """Each runtime: published (its index digest, the tags moved, bytes sent), unchanged or
    failed (why); then the mirrors that are behind."""
    out = [f"### Published to {_cell(report.registry)}", ""]
    rows = [
        (
            _cell(r.runtime), "**failed**" if r.status == "failed" else r.status,
            _cell(r.index or r.reason or ""), " ".join(map(_cell, r.tags_moved)),
            f"{r.bytes_uploaded:,}",
        )
        for r in report.runtimes
    ]  # fmt: skip
    out += _table(("runtime", "status", "index digest or reason", "tags moved", "bytes sent"), rows)
    for mirror, runtimes in report.mirrors_behind.items():
        for runtime, reason in runtimes.items():
            out += [
                "",
                f"Mirror {_cell(mirror)} is behind on {_cell(runtime)}: {_cell(reason or '')}",
            ]
    if report.error:
        out += ["", f"Stopped: {_cell(report.error)}"]
    return "\n".join(out) + "\n"


def job_summary(settings: Settings, text: str) -> None:
    """Append ``text`` to the job summary when there is one (on GitHub Actions)."""
    if settings.step_summary is not None:
        with settings.step_summary.open("a", encoding="utf-8") as summary:
            summary.write(text + "\n")
