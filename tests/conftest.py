"""Shared fixtures: the real Docker Engine, the runtime matrix, and images built once a session.

Engine-backed tests are marked ``engine``. When no engine answers they are skipped, unless
LAMBDA_IMAGES_REQUIRE_ENGINE=1 (set by .ci/run), which turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import EngineError
from pipeline.lock import Lock
from pipeline.matrix import Matrix, Target, load_matrix

REPO = Path(__file__).resolve().parent.parent


def require_engine() -> bool:
    return os.environ.get("LAMBDA_IMAGES_REQUIRE_ENGINE", "") not in ("", "0")


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


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("work")


BuiltImages = Callable[[str], dict[str, Target]]


def make_run(matrix: Matrix, work: Path, engine: Any = None) -> Any:
    """An orchestrate.Run over ``work``, with settings from the environment."""
    from pipeline.orchestrate import Run
    from pipeline.settings import Settings
    from pipeline.workdir import WorkDir

    settings = dataclasses.replace(Settings.from_environ(), work=work, matrix=matrix.path)
    return Run(
        settings=settings,
        matrix=matrix,
        lock=Lock.for_matrix(matrix.path),
        work=WorkDir(work),
        _client=engine,
    )


@pytest.fixture(scope="session")
def built(engine: Any, matrix: Matrix, work: Path) -> BuiltImages:
    """``built(runtime_id)`` builds every architecture of a runtime once per session and
    returns its targets by arch; images are tagged as the pipeline tags them."""
    from pipeline import orchestrate

    cache: dict[str, dict[str, Target]] = {}
    run = make_run(matrix, work, engine)

    def build(runtime_id: str) -> dict[str, Target]:
        if runtime_id not in cache:
            targets = matrix.targets([matrix.runtime(runtime_id)])
            for target in targets:
                with run.cell(target).locked():
                    inputs = orchestrate.prepare_cell(run, target)
                    orchestrate.build_cell(run, target, inputs)
            cache[runtime_id] = {t.arch.name: t for t in targets}
        return cache[runtime_id]

    return build


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
