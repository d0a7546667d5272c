"""One orchestrator for `build` and `rebuild`: the same skip, the same --force, one cell at a time.

Each test runs the real command line against the real engine, in a work folder and a local
image namespace of its own, so that no other test's cell or image is touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_runner import command
from conftest import Phase

REPO = Path(__file__).resolve().parents[2]
RT = "provided.debian12"
# Each test builds in a namespace of its own, from the build cache the phase filled for RT.
pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.cells(f"{RT}/x86_64")]


@pytest.fixture
def namespace(engine: Any, phase: Phase) -> Iterator[str]:
    """An image namespace of the test's own; its builds reuse the build cache of the phase's
    provided.debian12/x86_64 (so none of them is cold)."""
    name = f"lambda-images-orch-{uuid.uuid4().hex[:8]}"
    yield name
    for image in engine.images.list(name=f"{name}/*"):
        # Only this namespace's tags: the image (the same bytes, from the build cache) is also
        # the build phase's, under the phase's own names.
        for tag in image.tags:
            if tag.startswith(f"{name}/"):
                engine.images.remove(tag, force=True)


def _start(work: Path, namespace: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "LAMBDA_IMAGES_NAMESPACE": namespace}
    argv = command("--matrix", str(REPO / "runtimes.yaml"), "--work", str(work), *args)
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _run(work: Path, namespace: str, *args: str) -> tuple[Any, str]:
    proc = _start(work, namespace, *args, "--arch", "x86_64", "--json")
    out, err = proc.communicate(timeout=1800)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out), err


def _states(command: str, data: Any) -> list[str]:
    cells = data["images"] if command == "rebuild" else data
    return [c["state"] for c in cells]


def test_build_and_rebuild_skip_an_unchanged_cell_and_both_obey_force(
    engine: Any, tmp_path: Path, namespace: str
) -> None:
    work = tmp_path / "work"
    first, _ = _run(work, namespace, "rebuild", RT)
    assert _states("rebuild", first) == ["built"]
    image_id = first["images"][0]["image_id"]
    for verb in ("build", "rebuild"):
        data, err = _run(work, namespace, verb, RT)
        assert _states(verb, data) == ["skipped"], verb
        digest = (data["images"] if verb == "rebuild" else data)[0]["input_digest"]
        done = "its checks passed on it" + (
            ", its snapshot is current" if verb == "rebuild" else ""
        )
        line = f"{RT}/x86_64: unchanged (inputs {digest[7:19]}, image {image_id[7:19]}; {done})"
        assert f"{line}: nothing to do" in err.splitlines(), verb
    for verb in ("build", "rebuild"):
        data, err = _run(work, namespace, verb, RT, "--force")
        assert _states(verb, data) == ["built"], verb
        assert f"build {RT}/x86_64" in err
    # The same inputs, rebuilt: the same image (the classic builder's and BuildKit's caches).
    assert engine.images.get(f"{namespace}/{RT}:x86_64").id == image_id


def test_two_builds_of_one_cell_at_once_take_turns_and_make_one_image(
    engine: Any, tmp_path: Path, namespace: str
) -> None:
    work = tmp_path / "work"
    procs = [_start(work, namespace, "build", RT, "--arch", "x86_64") for _ in range(2)]
    results = [p.communicate(timeout=1800) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    lines = [out.strip().split("\t") for out, _ in results]
    assert {line[1] for line in lines} == {engine.images.get(f"{namespace}/{RT}:x86_64").id}
    assert sorted(line[3] for line in lines) == ["built", "skipped"]
    waited = [err for _, err in results if "is in use by another lambda-images process" in err]
    assert len(waited) == 1


@pytest.mark.parametrize(("record", "state"), [("build.json", "built"), ("test.json", "skipped")])
def test_a_truncated_record_is_redone_with_one_warning_and_no_traceback(
    engine: Any, tmp_path: Path, namespace: str, record: str, state: str
) -> None:
    work = tmp_path / "work"
    _run(work, namespace, "build", RT)
    path = work / RT / "x86_64" / record
    path.write_text(path.read_text()[:40])  # what an interrupted in-place write left
    data, err = _run(work, namespace, "build", RT)
    # No build record: the image is built again (from the layer cache: the same image id, so
    # its passing report still holds); no test record: the image is tested again.
    assert _states("build", data) == [state]
    tested = f"==> test {RT}/x86_64" in err.splitlines()
    assert tested == (record == "test.json"), err
    warnings = [line for line in err.splitlines() if "unreadable record" in line]
    assert len(warnings) == 1 and record in warnings[0], warnings
    assert "Traceback" not in err
    assert json.loads((work / RT / "x86_64" / "test.json").read_text())["ok"] is True
