"""The command line starts fast: reading a command line imports no stage, and each command
imports only the part of the conductor it calls (every test and every user command starts
``python -m pipeline`` as a process). Each case runs in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What a command that builds, publishes or writes an SBOM needs, and one that lists does not.
HEAVY = ("docker", "requests", "boto3", "debian", "cyclonedx", "jinja2", "google.protobuf")
LOADED = """
import json, sys
from pipeline.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def loaded(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", LOADED, "--matrix", str(REPO / "runtimes.yaml"), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted({m for m in modules for h in HEAVY if m == h or m.startswith(h + ".")})


@pytest.mark.parametrize(
    "args", [["--help"], ["build", "--help"], ["build"], ["publish", "x"], ["nosuchcommand"]]
)
def test_reading_a_command_line_loads_no_stage(args: list[str]) -> None:
    modules = loaded(*args)
    assert heavy(modules) == []
    assert "yaml" not in modules and "jsonschema" not in modules  # not even the matrix
    assert not [
        m
        for m in modules
        if m.startswith("pipeline.orchestrate.") and m != "pipeline.orchestrate.requests"
    ]


@pytest.mark.parametrize("args", [["list"], ["matrix"], ["build", "nope"]])
def test_listing_or_refusing_runtimes_loads_the_matrix_alone(args: list[str]) -> None:
    modules = loaded(*args)
    assert "pipeline.matrix" in modules
    assert heavy(modules) == []
    assert "pipeline.orchestrate.cells" not in modules


def test_the_arch_choices_are_the_matrix_architectures() -> None:
    from pipeline.cli.options import ARCH_NAMES
    from pipeline.matrix import ARCHES

    assert tuple(ARCHES) == ARCH_NAMES


def test_the_conductors_face_hands_on_each_name_from_its_module() -> None:
    """orchestrate/__init__.py imports its parts on first use: every name it declares is
    imported there for the type checker, and is, once every part is imported, the function or
    class its module defines (a part named like one of them would hide it)."""
    import ast
    import importlib
    import types

    import pipeline.orchestrate as face

    source = REPO / "pipeline" / "orchestrate"
    tree = ast.parse((source / "__init__.py").read_text("utf-8"))
    typed = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1
        for alias in node.names
    }
    assert typed == set(face.__all__)
    for part in source.glob("*.py"):
        importlib.import_module(f"pipeline.orchestrate.{part.stem}")
    for name in face.__all__:
        value = getattr(face, name)
        assert not isinstance(value, types.ModuleType), name
        assert value.__module__.startswith("pipeline.orchestrate."), name
