"""Every debian12 row of runtimes.yaml builds on both architectures and its image starts its
language runtime (images are built once per session by the ``built`` fixture)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.matrix import Target, load_matrix

REPO = Path(__file__).resolve().parent.parent
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


class OneInvocation:
    """The smallest Runtime API: hands out one event on /next and keeps the response."""

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = json.dumps(event).encode()
        self.response: bytes | None = None
        self.done = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if outer.done.is_set() or not self.path.endswith("/invocation/next"):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", "req-1")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:test")
                self.send_header("Content-Length", str(len(outer.event)))
                self.end_headers()
                self.wfile.write(outer.event)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                ends = ("/req-1/response", "/req-1/error", "/init/error")
                if self.path.endswith(ends) and not outer.done.is_set():
                    outer.response = body  # the first answer; later ones (after a 404) don't count
                    outer.done.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


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


def invoke_node_image(
    engine: Any, image: str, folder: Path, environment: dict[str, str], wait: float
) -> dict[str, Any]:
    """Run the image with a handler in ``folder`` against a one-shot Runtime API."""
    (folder / "app.js").write_text(
        "exports.handler = async (event) => ({ doubled: event.n * 2, node: process.version });\n"
    )
    folder.chmod(0o755)
    (folder / "app.js").chmod(0o644)
    api = OneInvocation({"n": 21})
    container = engine.containers.run(
        image,
        command=["app.handler"],
        environment={"AWS_LAMBDA_RUNTIME_API": api.address, **environment},
        network_mode="host",
        volumes={str(folder): {"bind": "/var/task", "mode": "ro"}},
        read_only=True,
        tmpfs={"/tmp": ""},
        detach=True,
    )
    try:
        assert api.done.wait(wait), container.logs().decode()[-2000:]
    finally:
        container.remove(force=True)
        api.server.shutdown()
    answer: dict[str, Any] = json.loads(api.response or b"{}")
    return answer


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_node_image_answers_an_invocation_through_the_runtime_api(
    arch: str, built: BuiltImages, engine: Any, tmp_path: Path
) -> None:
    # The client's JavaScript transport: the handler is loaded, invoked and answered.
    target = built("nodejs18.x.debian12")[arch]
    answer = invoke_node_image(
        engine,
        target.image_tag,
        tmp_path,
        {"AWS_LAMBDA_NODEJS_USE_ALTERNATIVE_CLIENT_1": "true"},
        wait=120,
    )
    assert answer["doubled"] == 42
    assert answer["node"].startswith("v18.")


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="aws-lambda-ric 3.3.0's native (libcurl) transport fetches the event and then never "
    "posts the response against this Runtime API stand-in; under investigation",
)
def test_node_native_transport_answers_an_invocation(
    built: BuiltImages, engine: Any, tmp_path: Path
) -> None:
    target = built("nodejs18.x.debian12")["x86_64"]
    answer = invoke_node_image(engine, target.image_tag, tmp_path, {}, wait=30)
    assert answer["doubled"] == 42
