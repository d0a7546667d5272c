"""BuildKit through the Engine API, on an engine whose default builder is BuildKit (Docker >= 23).

Marked ``buildkit``: deselected on older engines (conftest.py). To run it against the second
engine of scripts/engine26:
``eval "$(scripts/engine26 env)" && .venv/bin/pytest tests/engine/test_buildkit.py``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from pipeline import buildkit

pytestmark = [pytest.mark.engine, pytest.mark.buildkit]


@pytest.fixture
def bk_engine(engine: Any) -> Any:
    if buildkit.engine_builder(engine) != "buildkit":
        version = engine.version().get("Version")
        pytest.fail(f"the engine ({version}) builds with the classic builder, not BuildKit")
    return engine


@pytest.fixture
def tag(bk_engine: Any) -> Iterator[str]:
    name = f"lambda-images-test/buildkit:{uuid.uuid4().hex[:12]}"
    yield name
    with contextlib.suppress(docker.errors.ImageNotFound):
        bk_engine.images.remove(name)


def _run(lines: Any) -> tuple[list[str], str]:
    seen: list[str] = []
    while True:
        try:
            seen.append(next(lines))
        except StopIteration as done:
            return seen, str(done.value)


def test_a_scratch_image_is_labelled_with_the_platform_asked_for(
    bk_engine: Any, tag: str, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY hello /hello\nWORKDIR /var/task\n")
    (tmp_path / "hello").write_text("hello\n")
    lines, image_id = _run(
        buildkit.build_image(
            bk_engine, tmp_path, tag=tag, platform="linux/arm64", labels={"test": "buildkit"}
        )
    )
    image = bk_engine.images.get(tag)
    assert image.id == image_id
    assert image.attrs["Architecture"] == "arm64"
    assert image.attrs["Config"]["Labels"] == {"test": "buildkit"}
    assert any("COPY hello /hello" in line for line in lines), lines


def test_an_error_is_raised_with_the_engines_message(
    bk_engine: Any, tag: str, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY missing /missing\n")
    with pytest.raises(buildkit.BuildKitError, match="missing"):
        _run(buildkit.build_image(bk_engine, tmp_path, tag=tag, platform="linux/amd64", labels={}))
