"""The shape of the code, as the README's Layout describes it: stages are peers that never
import a stage the pipeline runs after them (nor the conductor); only the conductor knows the
order; the command line only parses and prints; no private attribute of the docker SDK is used.
Read from the source with ``ast``: nothing is imported or run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline"

# The pipeline's stages in the order it runs them; the modules of each (a stage's helpers
# included). A stage may import the stages before it, never one after it.
STAGES: list[tuple[str, set[str]]] = [
    ("inputs", {"inputs", "gobuild", "pins", "upstream", "versions"}),
    ("base", {"base", "apt"}),
    ("render", {"render"}),
    ("build", {"build", "buildkit", "incremental"}),
    ("test", {"conformance", "probes"}),
    ("sbom", {"sbom"}),
    ("snapshot", {"snapshot"}),
    ("branch", {"branch"}),
    ("publish", {"publish"}),
    ("outdated", {"outdated"}),
]
CONDUCTOR = {"orchestrate"}
FACE = {"cli", "__main__", "show"}  # the command line and the one renderer it prints through


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(p for p in parts if p != "__init__")] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    """The pipeline modules ``name`` imports (dotted, relative to the package)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            elif (node.module or "").startswith("pipeline"):
                module = (node.module or "").removeprefix("pipeline").lstrip(".")
            else:
                continue
            out.add(module)
            out.update(f"{module}.{a.name}".strip(".") for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(
                a.name.removeprefix("pipeline.")
                for a in node.names
                if a.name.startswith("pipeline")
            )
    return {m for m in out if m}


def _top(module: str) -> str:
    return module.split(".")[0]


MODULES = _modules()
GRAPH = {
    name: {_top(m) for m in _imports(name, path)} - {_top(name)} for name, path in MODULES.items()
}
STAGE_OF = {module: index for index, (_, modules) in enumerate(STAGES) for module in modules}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _top(n) in STAGE_OF))
def test_a_stage_imports_no_later_stage_nor_the_conductor(name: str) -> None:
    here = STAGE_OF[_top(name)]
    later = sorted(m for m in GRAPH[name] if STAGE_OF.get(m, -1) > here)
    assert not later, f"{name} (stage {STAGES[here][0]}) imports later stages: {later}"
    assert not GRAPH[name] & (CONDUCTOR | FACE), f"{name} imports the conductor or the CLI"


def test_only_the_conductor_imports_conformance() -> None:
    importers = sorted(n for n, deps in GRAPH.items() if "conformance" in deps)
    assert {_top(n) for n in importers} <= CONDUCTOR, importers


def test_nothing_below_the_cli_imports_it() -> None:
    assert not [n for n, deps in GRAPH.items() if "cli" in deps and _top(n) not in FACE]


CLI_FORBIDDEN = ("docker", "requests", "subprocess", "pipeline.engine", "pipeline.branch")
CLI_FORBIDDEN_NAMES = {"connect", "Registry", "Transport", "git", "run_git", "push_branch"}


@pytest.mark.parametrize(
    "path",
    [*sorted((PACKAGE / "cli").glob("*.py")), *sorted((PACKAGE / "show").glob("*.py"))],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_the_cli_only_parses_and_prints(path: Path) -> None:
    """No command-line module (nor the renderer) reaches the engine, a registry or git itself:
    the conductor does."""
    tree = ast.parse(path.read_text("utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not [a.name for a in node.names if a.name.startswith(CLI_FORBIDDEN)]
        if isinstance(node, ast.ImportFrom):
            module = (node.module or "").lstrip(".")
            assert not module.startswith(("docker", "requests", "subprocess", "engine", "branch"))
            assert not {a.name for a in node.names} & CLI_FORBIDDEN_NAMES, (module, node.names)
    assert len(path.read_text("utf-8").splitlines()) <= 250


def test_the_cli_stays_small() -> None:
    """Parsing and printing take little code: what grows belongs to the conductor, a stage or
    the renderer. (600 until `outdated --only` and `lock --upgrade --markdown` took 20 lines.)"""
    assert sum(len(p.read_text("utf-8").splitlines()) for p in (PACKAGE / "cli").glob("*.py")) < 625


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_no_private_attribute_of_another_object_is_used(path: Path) -> None:
    """``api._post`` and its kind break with any docker SDK release: only public interfaces."""
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            owner = node.value
            assert isinstance(owner, ast.Name) and owner.id in ("self", "cls"), (
                f"{path.name}:{node.lineno}: .{node.attr} of another object"
            )


READS_THE_ENVIRONMENT = {"environ", "environb", "getenv", "getenvb"}


def test_only_settings_reads_the_environment() -> None:
    """Settings reads the environment once, at the edge; every other module is handed Settings
    (or its ``environ``), so no variable is read behind the command line's back."""
    readers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
                and node.attr in READS_THE_ENVIRONMENT
            ) or (
                isinstance(node, ast.ImportFrom)
                and node.module == "os"
                and {a.name for a in node.names} & READS_THE_ENVIRONMENT
            ):
                readers.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert readers == []
