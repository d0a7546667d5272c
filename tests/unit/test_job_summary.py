"""The scheduled run's job summary: `plan` renders every cell of the run (built, unchanged,
failed, unlocked) and what becomes of each runtime into $GITHUB_STEP_SUMMARY, a cell the lock
cannot build is skipped rather than failed, and a publish report becomes a table of what was
published. Text from outside (a registry's reason) stays inside its table cell."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from markdown_it import MarkdownIt

from pipeline.publish.report import MirrorReport, PublishReport, RuntimeReport
from pipeline.show.markdown import CELL_STATES, publish_markdown

REPO = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "ab" * 32

# A run of four runtimes: one changed on both arches, one unchanged, one with a failed cell
# (no record), and one the lock cannot build (`matrix --json` said "locked": false).
CELLS = {
    "include": [
        {"runtime": "provided.debian12", "arch": "x86_64", "runner": "ubuntu-24.04",
         "locked": True},
        {"runtime": "provided.debian12", "arch": "arm64", "runner": "ubuntu-24.04-arm",
         "locked": True},
        {"runtime": "python3.11.debian12", "arch": "x86_64", "runner": "ubuntu-24.04"},
        {"runtime": "go.debian12", "arch": "x86_64", "runner": "ubuntu-24.04", "locked": True},
        {"runtime": "go.debian12", "arch": "arm64", "runner": "ubuntu-24.04-arm", "locked": True},
        {"runtime": "python3.13", "arch": "x86_64", "runner": "ubuntu-24.04", "locked": False,
         "unlocked": "python3.13/x86_64: its Python packages are unlocked"},
    ]
}  # fmt: skip
STATES = {
    ("provided.debian12", "x86_64"): "built",
    ("provided.debian12", "arm64"): "built",
    ("python3.11.debian12", "x86_64"): "unchanged",
    ("go.debian12", "x86_64"): "built",  # go.debian12/arm64 left no record: it failed
}


def plan(tmp_path: Path) -> tuple[dict[str, object], str]:
    """`lambda-images plan --json` on the sample run, and the job summary it wrote."""
    (tmp_path / "cells.json").write_text(json.dumps(CELLS))
    for (runtime, arch), state in STATES.items():
        folder = tmp_path / "states" / runtime / arch
        folder.mkdir(parents=True)
        record = {"runtime": runtime, "arch": arch, "digest": DIGEST, "parts": {}, "state": state}
        (folder / "inputs.json").write_text(json.dumps(record))
    summary = tmp_path / "summary.md"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "plan", "--cells", "cells.json", "states", "--json"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env={"PATH": "/usr/bin:/bin", "GITHUB_STEP_SUMMARY": str(summary),
             "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), summary.read_text()


def table_rows(markdown: str) -> list[list[str]]:
    """The body rows of the first table, cell by cell, as a Markdown reader sees them."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    rows, row, inside = [], [], False
    for token in tokens:
        if token.type == "tbody_open":
            inside = True
        elif token.type == "tbody_close":
            break
        elif inside and token.type == "tr_close":
            rows.append(row)
            row = []
        elif inside and token.type == "inline":
            row.append(token.content)
    return rows


def test_plan_decides_each_runtime_and_skips_an_unlocked_one(tmp_path: Path) -> None:
    decided, _ = plan(tmp_path)
    assert decided["publish"] == ["provided.debian12"]
    assert decided["unchanged"] == ["python3.11.debian12"]
    assert decided["incomplete"] == ["go.debian12"]
    assert decided["unlocked"] == ["python3.13"]
    assert decided["refill"] == {"include": []}
    assert decided["cells"] == [
        {"runtime": "go.debian12", "arch": "x86_64", "state": "built"},
        {"runtime": "go.debian12", "arch": "arm64", "state": "failed"},
        {"runtime": "provided.debian12", "arch": "x86_64", "state": "built"},
        {"runtime": "provided.debian12", "arch": "arm64", "state": "built"},
        {"runtime": "python3.11.debian12", "arch": "x86_64", "state": "unchanged"},
        {"runtime": "python3.13", "arch": "x86_64", "state": "unlocked"},
    ]


def test_the_job_summary_has_every_cell_in_its_state(tmp_path: Path) -> None:
    _, summary = plan(tmp_path)
    rows = table_rows(summary)
    assert rows == [
        ["`go.debian12`", "`x86_64`", CELL_STATES["built"]],
        ["`go.debian12`", "`arm64`", CELL_STATES["failed"]],
        ["`provided.debian12`", "`x86_64`", CELL_STATES["built"]],
        ["`provided.debian12`", "`arm64`", CELL_STATES["built"]],
        ["`python3.11.debian12`", "`x86_64`", CELL_STATES["unchanged"]],
        ["`python3.13`", "`x86_64`", CELL_STATES["unlocked"]],
    ]
    assert "3 built, 1 unchanged, 1 failed, 1 unlocked" in summary
    assert "To publish: `provided.debian12`" in summary
    assert "Not published: a cell failed: `go.debian12`" in summary
    assert "Skipped: a cell is unlocked: `python3.13`" in summary
    assert CELL_STATES["unlocked"].startswith("skipped")


def test_the_publish_summary_keeps_a_hostile_reason_in_its_cell() -> None:
    report = PublishReport(
        registry="127.0.0.1:5000/lambda",
        git_remote=None,
        runtimes=[
            RuntimeReport(runtime="provided.debian12", repository="lambda/provided",
                          status="published", index=DIGEST, tags_moved=["debian12"],
                          bytes_uploaded=229_176_499),
            RuntimeReport(runtime="python3.11.debian12", repository="lambda/python",
                          reason="denied | <script>x</script>\n| forged | row |"),
        ],
    )  # fmt: skip
    report.runtimes[0].mirrors["m.example/lambda"] = MirrorReport(reason="timed out")
    text = publish_markdown(report)
    assert table_rows(text) == [
        ["`provided.debian12`", "published", f"`{DIGEST}`", "`debian12`", "229,176,499"],
        ["`python3.11.debian12`", "**failed**",
         "`denied | <script>x</script>\\n| forged | row |`", "", "0"],
    ]  # fmt: skip
    assert "Mirror `m.example/lambda` is behind on `provided.debian12`: `timed out`" in text
