"""A malformed runtimes.yaml gets one line naming file, line and field, exit 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

GOOD = (REPO / "runtimes.yaml").read_text()


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True
    )


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("case", "edit", "needle", "expected"),
    [
        (
            "unknown key",
            lambda t: t.replace("    family: python\n", "    family: python\n    famliy: x\n"),
            "famliy: x",
            "runtimes[1].famliy: unknown key 'famliy'",
        ),
        (
            "missing field",
            lambda t: t.replace('    version: "3.11"\n', ""),
            "- id: python3.11.debian12",
            "runtimes[1]: missing required field 'version'",
        ),
        (
            "unknown architecture",
            lambda t: t.replace(
                "    tag: 3.11-debian12\n    os: debian12\n    architectures: [x86_64, arm64]",
                "    tag: 3.11-debian12\n    os: debian12\n    architectures: [x86_64, arm65]",
            ),
            "architectures: [x86_64, arm65]",
            "runtimes[1].architectures[1]: 'arm65' is not allowed; expected one of: x86_64, arm64",
        ),
    ],
)
def test_malformed_matrix_gets_one_line_naming_file_line_field(
    tmp_path: Path, case: str, edit: object, needle: str, expected: str
) -> None:
    bad = edit(GOOD)  # type: ignore[operator]
    assert bad != GOOD, f"the {case} edit did not apply"
    (tmp_path / "runtimes.yaml").write_text(bad)
    proc = run_cli("--work", "out", "render", cwd=tmp_path)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert f"runtimes.yaml:{_line_of(bad, needle)}: {expected}" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runtimes.yaml"]  # nothing written


def test_missing_matrix_file_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_cli("--matrix", "nope.yaml", "list", cwd=tmp_path)
    assert proc.returncode == 2
    assert "nope.yaml: no such file" in proc.stderr


def test_unknown_runtime_suggests_the_closest(tmp_path: Path) -> None:
    proc = run_cli(
        "--matrix", str(REPO / "runtimes.yaml"), "rebuild", "python3.11.debain12", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "did you mean 'python3.11.debian12'?" in proc.stderr
