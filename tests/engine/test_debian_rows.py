"""Every debian12 row of runtimes.yaml builds on both architectures and its image starts its
language runtime (images are built once per session by the ``built`` fixture)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.matrix import Target, load_matrix

REPO = Path(__file__).resolve().parents[2]
BuiltImages = Callable[[str], dict[str, Target]]

MATRIX = load_matrix(REPO / "runtimes.yaml")
DEBIAN_TARGETS = [
    (rt.id, arch) for rt in MATRIX.runtimes if rt.os.id == "debian12" for arch in rt.architectures
]
# What each family's image must be able to start, and what its output starts with.
RUNTIME_CHECKS: dict[str, tuple[list[str], str]] = {
    "python": (["python3", "--version"], "Python 3."),
    "nodejs": (["node", "--version"], "v"),
    "provided": (["/bin/sh", "-c", "echo ready"], "ready"),
    "java": (["/bin/sh", "-c", "java -version 2>&1"], 'openjdk version "'),
    # The function brings the Go runtime client; the image brings the bootstrap that starts it.
    "go": (["/bin/sh", "-c", "test -x /var/runtime/bootstrap && echo ready"], "ready"),
}


def run(engine: Any, image: str, argv: list[str]) -> str:
    output: bytes = engine.containers.run(
        image,
        entrypoint=argv[:1],
        command=argv[1:],
        remove=True,
        network_disabled=True,
        # The native client reads the Runtime API address when it loads.
        environment={"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9"},
    )
    return output.decode().strip()


def test_every_debian12_family_has_a_check() -> None:
    families = {MATRIX.runtime(rt).family.id for rt, _ in DEBIAN_TARGETS}
    assert families <= set(RUNTIME_CHECKS)
    assert {"python", "nodejs", "provided"} <= families


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize(("runtime_id", "arch"), DEBIAN_TARGETS)
def test_debian12_row_builds_and_starts_its_runtime(
    runtime_id: str, arch: str, built: BuiltImages, engine: Any
) -> None:
    target = built(runtime_id)[arch]
    image = engine.images.get(target.image_tag)
    assert image.attrs["Architecture"] == target.arch.docker
    argv, expected = RUNTIME_CHECKS[target.runtime.family.id]
    assert run(engine, target.image_tag, argv).startswith(expected)
    assert run(engine, target.image_tag, ["uname", "-m"]) == target.arch.uname


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_node_runtime_interface_client_loads_its_native_addon(
    arch: str, built: BuiltImages, engine: Any
) -> None:
    target = built("nodejs18.x.debian12")[arch]
    script = (
        "const m = require('/var/runtime/node_modules/aws-lambda-ric/dist/rapid-client.node');"
        "console.log(typeof m.next)"
    )
    assert run(engine, target.image_tag, ["node", "-e", script]) == "function"


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_node_image_answers_an_invocation_through_the_runtime_api(
    arch: str, built: BuiltImages, tmp_path: Path
) -> None:
    """aws-lambda-ric (its native transport, as on Lambda) serves a handler through the
    project's Runtime API emulator."""
    import subprocess
    import sys

    target = built("nodejs18.x.debian12")[arch]
    (tmp_path / "app.js").write_text(
        "exports.handler = async (event) => ({ doubled: event.n * 2, node: process.version });\n"
    )
    tmp_path.chmod(0o755)
    (tmp_path / "app.js").chmod(0o644)
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "invoke", target.image_tag, "--handler", "app.handler",
         "--code", str(tmp_path), "--event", '{"n": 21}', "--timeout", "120"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = json.loads(proc.stdout)
    assert answer["doubled"] == 42
    assert answer["node"].startswith("v18.")
