"""The rendered bootstraps: each managed runtime names itself as AWS names it (AWS_EXECUTION_ENV),
OS-only runtimes bring no bootstrap of their own, and every bootstrap passes shellcheck as the
POSIX shell script it is."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline.matrix import Matrix, load_matrix
from pipeline.render import render_target

REPO = Path(__file__).resolve().parents[2]
MATRIX = load_matrix(REPO / "runtimes.yaml")
MANAGED = [rt for rt in MATRIX.runtimes if rt.family.id in ("python", "nodejs")]

# AWS's identifiers of its Python and Node.js runtimes, by language version: python3.12, nodejs20.x.
AWS_SCHEME = {"python": "python{}", "nodejs": "nodejs{}.x"}


def bootstrap(runtime_id: str) -> str:
    target = MATRIX.targets([MATRIX.runtime(runtime_id)])[0]
    return render_target(target).files["bootstrap"].data.decode()


@pytest.mark.parametrize("runtime_id", [rt.id for rt in MANAGED])
def test_bootstrap_exports_awss_execution_env(runtime_id: str) -> None:
    # A row of AWS's is named by its identifier; a Debian row by AWS's runtime of its language
    # version (python3.11.debian12 → AWS_Lambda_python3.11).
    runtime = MATRIX.runtime(runtime_id)
    aws_id = AWS_SCHEME[runtime.family.id].format(runtime.version)
    if not runtime.os.id.startswith("debian"):
        assert aws_id == runtime_id
    expected = f"AWS_Lambda_{aws_id}"
    exports = [
        line for line in bootstrap(runtime_id).splitlines() if "export AWS_EXECUTION_ENV" in line
    ]
    assert exports == [f"export AWS_EXECUTION_ENV={expected}"]


def test_os_only_runtimes_bring_no_bootstrap(matrix: Matrix) -> None:
    for runtime in matrix.runtimes:
        if runtime.family.id == "provided":
            rendered = render_target(matrix.targets([runtime])[0])
            assert "bootstrap" not in rendered.files
            assert "AWS_EXECUTION_ENV" not in rendered.dockerfile


def test_node_bootstrap_searches_layers_for_its_own_major_version() -> None:
    text = bootstrap("nodejs18.x.debian12")
    assert (
        'NODE_PATH="/opt/nodejs/node18/node_modules:/opt/nodejs/node_modules:'
        '/var/runtime/node_modules:/var/runtime:/var/task"'
    ) in text


@pytest.mark.parametrize("runtime_id", ["python3.11.debian12", "nodejs18.x.debian12", "python3.12"])
def test_bootstrap_passes_shellcheck(runtime_id: str, tmp_path: Path) -> None:
    script = tmp_path / "bootstrap"
    script.write_text(bootstrap(runtime_id))
    result = subprocess.run(
        ["shellcheck", "--shell=sh", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
