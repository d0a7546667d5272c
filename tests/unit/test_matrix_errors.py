"""A malformed runtimes.yaml gets one line naming file, line and field, exit 2, nothing written."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_runner import lambda_images
from conftest import REPO

from pipeline.matrix import load_matrix

GOOD = (REPO / "runtimes.yaml").read_text()
ROW = "  - id: python3.11.debian12\n"
INDEX = [rt.id for rt in load_matrix(REPO / "runtimes.yaml").runtimes].index("python3.11.debian12")


def in_python_row(old: str, new: str) -> Callable[[str], str]:
    """An edit of the python3.11.debian12 row only."""

    def edit(text: str) -> str:
        start = text.index(ROW)
        end = text.find("\n  - id:", start + len(ROW))
        end = len(text) if end < 0 else end
        return text[:start] + text[start:end].replace(old, new, 1) + text[end:]

    return edit


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return lambda_images(*args, cwd=cwd)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("case", "edit", "needle", "expected"),
    [
        (
            "unknown key",
            in_python_row("    family: python\n", "    family: python\n    famliy: x\n"),
            "famliy: x",
            f"runtimes[{INDEX}].famliy: unknown key 'famliy'",
        ),
        (
            "missing field",
            in_python_row('    version: "3.11"\n', ""),
            "- id: python3.11.debian12",
            f"runtimes[{INDEX}]: missing required field 'version'",
        ),
        (
            "unknown architecture",
            in_python_row("architectures: [x86_64, arm64]", "architectures: [x86_64, arm65]"),
            "architectures: [x86_64, arm65]",
            f"runtimes[{INDEX}].architectures[1]: 'arm65' is not allowed; "
            "expected one of: x86_64, arm64",
        ),
        (
            "two runtimes of one family under one tag",
            in_python_row("    tag: 3.11-debian12\n", '    tag: "3.12"  # taken\n'),
            "# taken",
            f"runtimes[{INDEX}].tag: python3.11.debian12 would be published as python:3.12, "
            "which python3.12 (line ",
        ),
        (
            "a tag publishing writes itself",
            in_python_row("    tag: 3.11-debian12\n", "    tag: latest-arm64\n"),
            "tag: latest-arm64",
            f"runtimes[{INDEX}].tag: tag 'latest-arm64' is written by publishing itself",
        ),
        (
            "a runtime takes an npm set that is not declared",
            lambda text: text.replace(
                "      npm_sets: [aws-sdk-js-v3]\n", "      npm_sets: [aws-sdk-js-v4]  # typo\n", 1
            ),
            "# typo",
            "runtimes[0].install.npm_sets[0]: unknown npm set 'aws-sdk-js-v4'; expected one of: "
            "aws-sdk-js-v3 (did you mean 'aws-sdk-js-v3'?)",
        ),
        (
            "latest names a runtime of another family",
            lambda text: text.replace(
                "    latest: python3.14\n", "    latest: nodejs24.x  # wrong family\n"
            ),
            "# wrong family",
            "families.python.latest: unknown runtime of python 'nodejs24.x'",
        ),
    ],
)
def test_malformed_matrix_gets_one_line_naming_file_line_field(
    tmp_path: Path, case: str, edit: Callable[[str], str], needle: str, expected: str
) -> None:
    bad = edit(GOOD)
    assert bad != GOOD, f"the {case} edit did not apply"
    (tmp_path / "runtimes.yaml").write_text(bad)
    proc = run_cli("--work", "out", "render", cwd=tmp_path)
    assert proc.returncode == 11
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert f"runtimes.yaml:{_line_of(bad, needle)}: {expected}" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runtimes.yaml"]  # nothing written


def test_missing_matrix_file_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_cli("--matrix", "nope.yaml", "list", cwd=tmp_path)
    assert proc.returncode == 11
    assert "nope.yaml: no such file" in proc.stderr


def test_unknown_runtime_suggests_the_closest(tmp_path: Path) -> None:
    proc = run_cli(
        "--matrix", str(REPO / "runtimes.yaml"), "rebuild", "python3.11.debain12", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "did you mean 'python3.11.debian12'?" in proc.stderr
