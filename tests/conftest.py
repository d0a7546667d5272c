"""Shared fixtures: the real Docker Engine, the runtime matrix, and the build phase that makes every
image the selected engine tests read, once per run (tests/build_phase.py).

Engine-backed tests are marked ``engine``. When no engine answers they are skipped, unless
LAMBDA_IMAGES_REQUIRE_ENGINE=1 (set by .ci/run), which turns the skip into a failure and makes
any skip at all fail the run (EXPECTED_SKIPS names the ones a lane may have).

Markers (pyproject.toml lists them):

* ``cells("python3.11.debian12", "provided.debian12/arm64", no_cache=False)``: the cells a test
  reads from the build phase; a runtime alone means all its architectures. ``no_cache``: made
  without the build cache (a test that proves the cold path reads its log).
* ``buildkit``: needs an engine that builds with BuildKit. Deselected on a classic-builder engine,
  unless LAMBDA_IMAGES_REQUIRE_BUILDKIT=1 (the second engine's lane), where it must run.
* ``two_engines``: compares this run's snapshots with another engine's (the work folder named by
  LAMBDA_IMAGES_COMPARE_WORK); deselected without it.

``--rows RT,RT`` keeps only the engine tests whose cells are of those rows (a lane that checks a
subset deselects the rest rather than skipping it). Without ``--full``, the tests that read a
``FULL_ONLY`` cell are deselected and the build phase leaves those cells out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from build_phase import BuildPhase, PhaseReport, Plan, cells_of, make_plan

from pipeline import ledger
from pipeline.errors import EngineError
from pipeline.matrix import Matrix, Target, load_matrix

REPO = Path(__file__).resolve().parent.parent
PLAN = pytest.StashKey[Plan]()
OWN_RUN = pytest.StashKey[Path]()  # a run folder this process made (and removes when passed)
PASSED = pytest.StashKey[bool]()
# Tests that may skip in CI (nodeid → why). Lanes deselect what their engine cannot run, so
# nothing is expected to skip today; a skip that is not listed here fails the run.
EXPECTED_SKIPS: dict[str, str] = {}
# The first engine test runs the build phase (so --durations charges it to itself), the last of
# its scope reads the ledger; the session's end reads it again, once both scopes are done.
FIRST = "tests/engine/test_build_phase.py::test_the_build_phase_makes_every_planned_cell"
LAST = "tests/engine/test_build_phase.py::test_no_cell_is_built_cold_twice"


def require_engine() -> bool:
    return os.environ.get("LAMBDA_IMAGES_REQUIRE_ENGINE", "") not in ("", "0")


def require_buildkit() -> bool:
    return os.environ.get("LAMBDA_IMAGES_REQUIRE_BUILDKIT", "") not in ("", "0")


def _is_worker() -> bool:
    return bool(os.environ.get("PYTEST_XDIST_WORKER"))


# --- the run folder: the build phase's work folder, its git remote, the ledger -------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rows",
        default="",
        help="comma-separated runtime ids: keep only the engine tests whose cells are of these",
    )
    parser.addoption(
        "--full",
        action="store_true",
        help="also the cells only the full suite checks (FULL_ONLY in tests/conftest.py)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Name the run folder once, in the process that starts the run (xdist workers inherit it):
    LAMBDA_IMAGES_TEST_RUN if set (CI keeps it, to print and compare), else a temporary one that
    a passing run removes."""
    if _is_worker():
        return
    if not os.environ.get("LAMBDA_IMAGES_TEST_RUN"):
        os.environ["LAMBDA_IMAGES_TEST_RUN"] = tempfile.mkdtemp(prefix="lambda-images-tests-")
        config.stash[OWN_RUN] = Path(os.environ["LAMBDA_IMAGES_TEST_RUN"])
    run = Path(os.environ["LAMBDA_IMAGES_TEST_RUN"])
    os.environ.setdefault("LAMBDA_IMAGES_BUILD_LEDGER", str(run / "ledger.jsonl"))


def run_folder() -> Path:
    return Path(os.environ["LAMBDA_IMAGES_TEST_RUN"])


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(OWN_RUN, None)
    if own is not None and config.stash.get(PASSED, False):
        shutil.rmtree(own, ignore_errors=True)


# --- selection: rows, engines, order ------------------------------------------------------------


def _builder() -> str:
    from pipeline import buildkit
    from pipeline.engine import connect
    from pipeline.settings import Settings

    try:
        client = connect(Settings.from_environ().docker_host, timeout=30)
    except EngineError:
        return ""
    return buildkit.engine_builder(client, Settings.from_environ().builder)


ENGINE_FOLDER = "tests/engine/"
# After the build phase, the engine tests run in two workers, each in order: this second scope's
# modules in one, every other engine module in the other (the build phase's own tests first and
# last among them). Each is about half of the engine tests' time after the phase (measured per
# module with --durations=0: 1,223 s in all with every cell, about 970 s without FULL_ONLY's);
# modules that count containers or processes of their own lane stay together (test_emulator.py
# and test_emulator_cleanup.py side by side would each see the other's killed CLI's containers
# as left behind).
SECOND_ENGINE_SCOPE = frozenset(
    f"{ENGINE_FOLDER}{name}"
    for name in (
        "test_rebuild.py",
        "test_java_go_rows.py",
        "test_guides.py",
        "test_rie_build.py",
        "test_publish_images.py",
        "test_outdated_published.py",
        "test_releases.py",
        "test_publish.py",
        "test_publish_hardening.py",
        "test_probes.py",
    )
)


def _in_engine_folder(item: pytest.Item) -> bool:
    """tests/engine/ holds the tests that run after the build phase, in two workers."""
    return item.nodeid.startswith(ENGINE_FOLDER)


def engine_scope(nodeid: str) -> str | None:
    """The engine scope of a test (None for a unit test): the scheduler gives each to one
    worker, which runs its tests in collection order."""
    if not nodeid.startswith(ENGINE_FOLDER):
        return None
    module = nodeid.partition("::")[0]
    return f"{ENGINE_FOLDER}#2" if module in SECOND_ENGINE_SCOPE else f"{ENGINE_FOLDER}#1"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: two workers a core. The unit tests wait on subprocesses (the CLI) and on
    sockets (stand-in servers) for about half their time, so with one worker a core the cores
    idle: 882 tests took 68 s on 2 cores with 2 workers, 47 s with 4."""
    return 2 * (os.cpu_count() or 1)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's scheduling by scope (its hook for a scheduler of one's own), with the
    engine tests in two scopes (``engine_scope``) and the unit tests a module a scope. Scopes go
    out in collection order (``--no-loadscope-reorder`` in pyproject.toml): the two engine
    scopes first, so that one worker starts the build phase at once and a second one waits for
    it, while the other workers take the unit tests."""
    from xdist.scheduler import LoadScopeScheduling

    class EngineInTwoWorkers(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return engine_scope(nodeid) or nodeid.rsplit("::", 1)[0]

    return EngineInTwoWorkers(config, log)


# The cells that only `scripts/test --full` checks (the workflow's daily `suite` job runs it): the
# arm64 images of the Debian 13 rows of Java, Node.js and Python, the longest builds under qemu
# (about 1,270 s of a cold build phase's 3,700). Each pairing they combine is still checked on
# every submission: the family on arm64 by its Debian 12 row (java17, nodejs18.x, python3.11), the
# family on Debian 13 by the same row's x86_64 image, and Debian 13 on arm64 by provided.debian13
# and ruby3.3.debian13. A test that reads one of them is deselected without --full.
FULL_ONLY = frozenset(
    {"java21.debian13/arm64", "nodejs20.x.debian13/arm64", "python3.13.debian13/arm64"}
)


def cells_read(item: pytest.Item, matrix: Matrix) -> set[str]:
    """The cells (``runtime/arch``) a test reads. A cells marker given with one of the test's
    parameters names that parameter's cells; any other (the module's, the function's) is
    narrowed to the test's ``runtime_id`` (or ``runtime``) and ``arch`` parameters."""
    callspec = getattr(item, "callspec", None)
    params: dict[str, Any] = callspec.params if callspec is not None else {}
    own = list(callspec.marks) if callspec is not None else []
    runtime = params.get("runtime_id", params.get("runtime"))
    arch = params.get("arch")
    out = set()
    for mark in item.iter_markers("cells"):
        narrowed = mark not in own
        for name in mark.args:
            runtime_id, _, one = name.partition("/")
            for each in [one] if one else matrix.runtime(runtime_id).architectures:
                if narrowed and (runtime not in (None, runtime_id) or arch not in (None, each)):
                    continue
                out.add(f"{runtime_id}/{each}")
    return out


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    rows = {r for r in config.getoption("--rows").split(",") if r}
    full = config.getoption("--full")
    matrix = load_matrix(REPO / "runtimes.yaml")
    keep, drop = [], []
    builder: str | None = None
    for item in items:
        names, cold = cells_of(list(item.iter_markers("cells")))
        runtimes = {name.partition("/")[0] for name in [*names, *cold]}
        if rows and _in_engine_folder(item) and not runtimes <= rows:
            drop.append(item)
            continue
        if not full and _in_engine_folder(item) and cells_read(item, matrix) & FULL_ONLY:
            drop.append(item)
            continue
        if item.get_closest_marker("buildkit") and not require_buildkit():
            builder = _builder() if builder is None else builder
            if builder == "classic":
                drop.append(item)
                continue
        if item.get_closest_marker("two_engines") and not os.environ.get(
            "LAMBDA_IMAGES_COMPARE_WORK"
        ):
            drop.append(item)
            continue
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    # Engine tests first (the build phase starts at once; unit tests fill the other workers),
    # scope by scope, the phase's own test first in its scope and the ledger's last.
    engine = [i for i in keep if _in_engine_folder(i)]
    rank = {FIRST: 0, LAST: 2}
    engine.sort(key=lambda i: (engine_scope(i.nodeid), rank.get(i.nodeid, 1)))
    # The unit tests a module at a time, the largest modules first (pytest-xdist's own order,
    # which --no-loadscope-reorder turns off so that the engine scopes go out first).
    unit = [i for i in keep if not _in_engine_folder(i)]
    size = Counter(i.nodeid.partition("::")[0] for i in unit)
    unit.sort(key=lambda i: -size[i.nodeid.partition("::")[0]])
    items[:] = engine + unit
    wanted: list[str] = []
    cold: list[str] = []
    for item in engine:
        names, no_cache = cells_of(list(item.iter_markers("cells")))
        wanted += names
        cold += no_cache
    plan = make_plan(matrix, wanted, cold)
    if not full:
        plan = dataclasses.replace(
            plan,
            cells=tuple(c for c in plan.cells if c.key not in FULL_ONLY),
            no_cache=frozenset(c for c in plan.no_cache if c.key not in FULL_ONLY),
        )
    config.stash[PLAN] = plan


@pytest.fixture(autouse=True)
def _ledger_by(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds a test makes itself are entered in the ledger under its name."""
    monkeypatch.setenv("LAMBDA_IMAGES_BUILD_LEDGER_BY", request.node.nodeid)


# --- skips that hide nothing --------------------------------------------------------------------


_skipped: list[str] = []
# When the unit and the engine tests ran (first start, last stop), for .ci/run's table of steps.
_spans: dict[str, list[float]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _is_worker():
        return
    if report.skipped and report.nodeid not in EXPECTED_SKIPS:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append(f"{report.nodeid}: {reason}")
    kind = "engine" if report.nodeid.startswith("tests/engine/") else "unit"
    span = _spans.setdefault(kind, [report.start, report.stop])
    span[0], span[1] = min(span[0], report.start), max(span[1], report.stop)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _is_worker():
        return
    if require_engine() and _skipped:
        print("\nUnexpected skips (LAMBDA_IMAGES_REQUIRE_ENGINE is set; see EXPECTED_SKIPS):")
        for line in _skipped:
            print(f"  {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    twice = _built_cold_twice() if _spans.get("engine") else {}
    if twice:
        print("\nCells built cold twice in this run (the build ledger; tests/ledger_report.py):")
        for cell, by in sorted(twice.items()):
            print(f"  {cell}: {', '.join(by)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    session.config.stash[PASSED] = session.exitstatus == 0
    timings = {kind: round(stop - start, 1) for kind, (start, stop) in _spans.items()}
    run_folder().mkdir(parents=True, exist_ok=True)
    (run_folder() / "timings.json").write_text(json.dumps(timings) + "\n")


def _built_cold_twice() -> dict[str, list[str]]:
    """The whole session's duplicates, once every worker is done (the ledger's own test runs
    last in its engine scope only; the other scope may still build after it)."""
    from ledger_report import built_cold_twice

    return built_cold_twice(ledger.read(_ledger_path()))


def _ledger_path() -> Path:
    """The run's build ledger (pytest_configure names one when the environment does not)."""
    return Path(os.environ.get("LAMBDA_IMAGES_BUILD_LEDGER", "/nonexistent"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _is_worker():
        return
    entries = list(ledger.read(_ledger_path()))
    if entries:
        from ledger_report import ledger_table

        terminalreporter.section("build ledger")
        for line in ledger_table(entries):
            terminalreporter.write_line(line)


# --- the engine, the matrix, the build phase ----------------------------------------------------


@pytest.fixture(scope="session")
def engine() -> Any:
    from pipeline.engine import connect
    from pipeline.settings import Settings

    try:
        return connect(Settings.from_environ().docker_host)
    except EngineError as exc:
        if require_engine():
            pytest.fail(f"LAMBDA_IMAGES_REQUIRE_ENGINE is set and {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def matrix() -> Matrix:
    from pipeline.settings import Settings

    return load_matrix(REPO / "runtimes.yaml", namespace=Settings.from_environ().namespace)


class _Targets(dict[str, Target]):
    """Targets by architecture; asking for one the build phase did not make says how to."""

    def __init__(self, runtime_id: str) -> None:
        super().__init__()
        self.runtime_id = runtime_id

    def __missing__(self, arch: str) -> Target:
        pytest.fail(f"{self.runtime_id}/{arch} is not in the build phase: add it to a cells marker")


@dataclasses.dataclass(frozen=True)
class Phase:
    """What the build phase made: its work folder, its git remote, its report."""

    work: Path
    remote: str
    report: PhaseReport
    matrix: Matrix

    def targets(self, runtime_id: str) -> dict[str, Target]:
        """The runtime's cells the phase made, by architecture; fails the test, with why, when
        one failed, or when the test asks for one that no cells marker planned."""
        out = _Targets(runtime_id)
        for target in self.matrix.targets([self.matrix.runtime(runtime_id)]):
            outcome = self.report.cells.get(target.key)
            if outcome is None:
                continue
            if outcome.failure:
                pytest.fail(f"the build phase could not make {target.key}: {outcome.failure}")
            out[target.arch.name] = target
        return out

    def cell(self, runtime_id: str, arch: str) -> Any:
        """The cell's folder in the phase's work folder (pipeline.workdir.Cell)."""
        from pipeline.workdir import WorkDir

        self.targets(runtime_id)[arch]  # made by the phase (or fails saying so)
        return WorkDir(self.work).cell(runtime_id, arch)

    def build_record(self, runtime_id: str, arch: str) -> Any:
        from pipeline.records import BuildRecord

        record = BuildRecord.read(self.cell(runtime_id, arch))
        assert record is not None, f"{runtime_id}/{arch}: no build.json"
        return record

    def conformance(self, runtime_id: str, arch: str) -> Any:
        """The cell's conformance report (test.json), as the phase's checks wrote it."""
        from pipeline.records import Report

        report = Report.read(self.cell(runtime_id, arch))
        assert report is not None, f"{runtime_id}/{arch}: no test.json"
        return report

    def snapshot(self, runtime_id: str, arch: str) -> Any:
        from pipeline.snapshot import require_snapshot

        return require_snapshot(self.cell(runtime_id, arch))

    def branch(self, runtime_id: str) -> str:
        """The commit the phase pushed as the runtime's branch."""
        if runtime_id in self.report.branch_failures:
            pytest.fail(f"branch {runtime_id}: {self.report.branch_failures[runtime_id]}")
        if runtime_id not in self.report.branches:
            pytest.fail(f"the build phase pushed no branch of {runtime_id}: not all arches planned")
        return self.report.branches[runtime_id]


@pytest.fixture(scope="session")
def phase(engine: Any, matrix: Matrix, pytestconfig: pytest.Config) -> Phase:
    """The build phase of this run, made by whichever process asks first (an xdist worker),
    and read back by the others from its report."""
    plan = pytestconfig.stash[PLAN]
    folder = run_folder() / "phase"
    work, remote = folder / "work", folder / "remote.git"
    folder.mkdir(parents=True, exist_ok=True)
    lock = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = work / "phase.json"
        planned = folder / "plan.json"
        wanted = json.dumps([c.key for c in plan.cells] + sorted(c.key for c in plan.no_cache))
        if record.is_file() and planned.is_file() and planned.read_text() == wanted:
            report = PhaseReport.from_json(json.loads(record.read_text()))
        else:
            if not remote.exists():
                subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
            work.mkdir(exist_ok=True)
            report = BuildPhase(
                plan, matrix, work=work, remote=f"file://{remote}", env=dict(os.environ),
                logs=folder / "logs",
            ).run()  # fmt: skip
            planned.write_text(wanted)
    finally:
        os.close(lock)
    return Phase(work=work, remote=f"file://{remote}", report=report, matrix=matrix)


@pytest.fixture(scope="session")
def work(phase: Phase) -> Path:
    """The build phase's work folder: every cell's records, layers and branch content."""
    return phase.work


BuiltImages = Callable[[str], dict[str, Target]]


@pytest.fixture(scope="session")
def built(phase: Phase) -> BuiltImages:
    """``built(runtime_id)``: the runtime's images the build phase made (tagged as the pipeline
    tags them), by architecture."""
    return phase.targets


def make_run(matrix: Matrix, work: Path, engine: Any = None) -> Any:
    """An orchestrate.Run over ``work``, with settings from the environment."""
    from pipeline.orchestrate import Run
    from pipeline.settings import Settings
    from pipeline.workdir import WorkDir

    settings = dataclasses.replace(Settings.from_environ(), work=work, matrix=matrix.path)
    return Run(
        settings=settings,
        matrix=matrix,
        work=WorkDir(work),
        _client=engine,
    )


@pytest.fixture
def git_remote(tmp_path: Path) -> str:
    """An empty bare repository, as a file:// URL."""
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
    return f"file://{remote}"


@pytest.fixture
def cleanup_images(engine: Any) -> Iterator[list[str]]:
    """Image names a test adds to this list are removed from the engine afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(Exception):  # best effort
            engine.images.remove(name, force=True)


@pytest.fixture(scope="session")
def registry_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A CNCF distribution registry (htpasswd auth) on a free 127.0.0.1 port, for the session."""
    from servers import RegistryServer

    server = RegistryServer(tmp_path_factory.mktemp("registry"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def local_archive(engine: Any, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An empty local apt repository (tests/apt_repo.py) and the URL it is served at."""
    from apt_repo import serve_archive

    repo = tmp_path / "repo"
    repo.mkdir()
    try:
        with serve_archive(engine, repo) as uri:
            yield repo, uri
    except RuntimeError as exc:
        pytest.fail(str(exc))
