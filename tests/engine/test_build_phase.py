"""The build phase and the build ledger (tests/build_phase.py, pipeline/ledger.py): every cell the
selected tests read is built, checked, snapshotted and branched once, and no cell of this run is
built cold twice. conftest.py runs the first of these tests before every other engine test of its
scope and the last one after them; the session's end reads the ledger once more, when the other
engine scope is done too."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from build_phase import NO_CACHE_BY, PHASE_BY
from conftest import PLAN, Phase
from ledger_report import built_cold_twice

from pipeline import ledger

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def test_the_build_phase_makes_every_planned_cell(
    phase: Phase, pytestconfig: pytest.Config
) -> None:
    plan = pytestconfig.stash[PLAN]
    assert phase.report.failures() == []
    assert sorted(phase.report.cells) == sorted(c.key for c in plan.cells)
    for outcome in phase.report.cells.values():
        assert outcome.built and outcome.snapshotted, outcome.cell.key
    whole = [
        rt
        for rt in plan.runtimes
        if {c.arch for c in plan.cells if c.runtime == rt}
        == set(phase.matrix.runtime(rt).architectures)
    ]
    assert sorted(phase.report.branches) == sorted(whole)


def test_no_cell_is_built_cold_twice(phase: Phase, engine: Any) -> None:
    """Every build this run made (the phase's and any test's own) is in the ledger; a cell built
    cold twice from the same inputs is work done twice."""
    entries = list(ledger.read(Path(os.environ["LAMBDA_IMAGES_BUILD_LEDGER"])))
    version = engine.version()["Version"]
    # (Two lanes may share the ledger: this engine's lines are those naming its version.)
    by_phase = sorted(
        f"{e.runtime}/{e.arch}"
        for e in entries
        if e.by in (PHASE_BY, NO_CACHE_BY) and e.engine.endswith(f" {version}")
    )
    # Each cell the phase's `build` really built (in a fresh work folder, every cell) has exactly
    # one line; one whose image was already there ("skipped") has none.
    built = [key for key, outcome in phase.report.cells.items() if outcome.state == "built"]
    assert by_phase == sorted(built)
    assert built_cold_twice(entries) == {}
