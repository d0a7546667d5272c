"""Exit codes: one per kind of error, as the README's table says, and what the CLI returns."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from cli_runner import lambda_images

from pipeline import errors

REPO = Path(__file__).resolve().parents[2]
MATRIX = ["--matrix", str(REPO / "runtimes.yaml")]


def documented() -> dict[str, int]:
    """``kind → exit code`` from the README's exit-code table."""
    text = (REPO / "README.md").read_text("utf-8")
    return {kind: int(code) for code, kind in re.findall(r"^\| (\d+) \| `(\w+)` \|", text, re.M)}


def test_every_error_kind_has_its_own_documented_code() -> None:
    kinds = {
        cls.__name__: cls.return_code
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.LambdaImagesError)
        and cls is not errors.LambdaImagesError
    }
    assert kinds == documented()
    assert len(set(kinds.values())) == len(kinds)  # unique
    assert 1 not in kinds.values()  # 1 is left to bugs


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return lambda_images(*args, cwd=cwd, timeout=120)


@pytest.mark.parametrize(
    ("kind", "args", "setup"),
    [
        ("UsageError", [*MATRIX, "build", "nope"], None),
        ("ConfigurationError", ["list"], "runtimes: [oops\n"),
        (
            "StaleError",
            ["--matrix", str(REPO / "runtimes.yaml"), "docs", "--check", "--readme"],
            "",
        ),
    ],
)
def test_the_cli_exits_with_the_documented_code(
    tmp_path: Path, kind: str, args: list[str], setup: str | None
) -> None:
    if kind == "ConfigurationError":
        (tmp_path / "runtimes.yaml").write_text(setup or "")
    if kind == "StaleError":
        readme = tmp_path / "README.md"
        readme.write_text("<!-- runtimes:start -->\nold\n<!-- runtimes:end -->\n")
        args = [*args, str(readme)]
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode == documented()[kind], result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_click_usage_error_is_a_usage_error(tmp_path: Path) -> None:
    result = _cli("build", "--no-such-option", cwd=tmp_path)
    assert result.returncode == documented()["UsageError"]


def test_a_malformed_release_time_is_one_line_and_exit_11(tmp_path: Path) -> None:
    result = lambda_images(
        *MATRIX,
        "list",
        cwd=tmp_path,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "LAMBDA_IMAGES_RELEASE_TIME": "2026-11-30T09"},
    )
    assert result.returncode == documented()["ConfigurationError"], result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: LAMBDA_IMAGES_RELEASE_TIME='2026-11-30T09': expected a non-negative integer "
        "(seconds since 1970, e.g. `date +%s`)"
    ]
