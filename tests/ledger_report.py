"""The build ledger of a test run, as a table, and the rule it keeps: no cell built cold twice.

`python tests/ledger_report.py LEDGER.jsonl` prints the table (.ci/run does, at the end of a run
whose two lanes share one ledger) and exits 1 when a cell was built cold twice.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import ledger


def ledger_table(entries: Iterable[ledger.LedgerEntry]) -> list[str]:
    """One line per build: cell, engine, builder, cold or cached (RUN steps), time, by whom."""
    rows = [("cell", "engine", "builder", "build", "RUN steps", "seconds", "by")]
    for e in entries:
        kind = "cold" if e.cold else "cached"
        steps = f"{e.run_steps_ran} ran, {e.run_steps_cached} cached"
        engine = e.engine.rsplit(" ", 1)[-1]  # the version tells the engines apart
        rows.append((f"{e.runtime}/{e.arch}", engine, e.builder, kind, steps, f"{e.seconds:.0f}",
                     e.by))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
            for row in rows]  # fmt: skip


def built_cold_twice(entries: Iterable[ledger.LedgerEntry]) -> dict[str, list[str]]:
    """Cells (row, arch, engine) built cold more than once from the same inputs, and by whom.

    A cell whose inputs changed (a test that publishes a newer package into the base's archive,
    a changed label) is a new image of that cell: its inputs digest tells it apart."""
    cold: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
    for e in entries:
        if e.cold and not e.by.endswith("(--no-cache)"):  # a cold build asked for is no duplicate
            cold[(*e.cell, e.input_digest)].append(e.by)
    return {
        f"{runtime}/{arch} on {engine} (inputs {digest[7:19]})": by
        for (runtime, arch, engine, digest), by in cold.items()
        if len(by) > 1
    }


def main(argv: list[str]) -> int:
    entries = list(ledger.read(Path(argv[1])))
    print("\n".join(ledger_table(entries)))
    twice = built_cold_twice(entries)
    for cell, by in twice.items():
        print(f"built cold {len(by)} times: {cell}, by {'; '.join(by)}")
    return 1 if twice else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
