"""Every Debian row of runtimes.yaml (debian12, debian13) builds on both architectures and its
image starts its language runtime, at the version of the Debian package runtimes.yaml names; the
Node.js rows carry the AWS SDK and answer through their cross-compiled native client; a Python
3.13 and a Node.js 20 handler see their event, their architecture and Lambda's context (the
images are the build phase's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from apt_repo import dpkg_query
from cli_runner import lambda_images
from conftest import BuiltImages

from pipeline.lock import Lock
from pipeline.matrix import Runtime, load_matrix

REPO = Path(__file__).resolve().parents[2]
MATRIX = load_matrix(REPO / "runtimes.yaml")
DEBIAN_OSES = ("debian12", "debian13")
DEBIAN_ROWS = [rt.id for rt in MATRIX.runtimes if rt.os.id in DEBIAN_OSES]
DEBIAN_TARGETS = [(rt, arch) for rt in DEBIAN_ROWS for arch in MATRIX.runtime(rt).architectures]
NODE_TARGETS = [
    (rt, arch) for rt, arch in DEBIAN_TARGETS if MATRIX.runtime(rt).family.id == "nodejs"
]
# Each test names the cells it reads (narrowed to its parameters: conftest.cells_read).
READS_ROWS = pytest.mark.cells(*DEBIAN_ROWS)


def upstream(debian_version: str) -> str:
    """The upstream part of a Debian version: `3.11.2-6+deb12u6` → `3.11.2`, `17.0.15+6-1` →
    `17.0.15` (Java's build number after `+` is not part of `java -version`'s version)."""
    version = debian_version.split(":", 1)[-1].rsplit("-", 1)[0]
    return version.split("+", 1)[0]


def expected_start(runtime: Runtime, installed: dict[str, str]) -> tuple[list[str], str]:
    """What the image must be able to start, and exactly what it prints: the language's version
    is that of the Debian package that brings it (python3.X, nodejs, openjdk-N-jre-headless,
    rubyX.Y), whose major (and minor) version is the row's own ``version`` in runtimes.yaml."""
    family = runtime.family.id
    if family == "python":
        version = upstream(installed[f"python{runtime.version}"])
        assert version.split(".")[:2] == runtime.version.split(".")
        return ["python3", "--version"], f"Python {version}"
    if family == "nodejs":
        version = upstream(installed["nodejs"])
        assert version.split(".")[0] == runtime.version
        return ["node", "--version"], f"v{version}"
    if family == "java":
        version = upstream(installed[f"openjdk-{runtime.version}-jre-headless"])
        assert version.split(".")[0] == runtime.version
        script = "java -version 2>&1 | head -n1 | cut -d'\"' -f2"
        return ["/bin/sh", "-c", script], version
    if family == "ruby":
        version = upstream(installed[f"ruby{runtime.version}"])
        assert version.split(".")[:2] == runtime.version.split(".")
        # puts, not print: a last line without its newline is lost from the engine's log (20.10)
        return ["ruby", "-e", "puts RUBY_VERSION"], version
    if family == "provided":
        return ["/bin/sh", "-c", "echo ready"], "ready"
    if family == "go":
        # The function brings the Go runtime client; the image brings the bootstrap that starts it.
        return ["/bin/sh", "-c", "test -x /var/runtime/bootstrap && echo ready"], "ready"
    raise AssertionError(f"no check for the {family} family")


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


def test_every_debian_os_has_the_python_nodejs_and_provided_rows() -> None:
    for os_id in DEBIAN_OSES:
        rows = {MATRIX.runtime(rt).family.id for rt in DEBIAN_ROWS if rt.endswith(os_id)}
        assert {"python", "nodejs", "provided"} <= rows, os_id


@pytest.mark.engine
@pytest.mark.slow
@READS_ROWS
@pytest.mark.parametrize(("runtime_id", "arch"), DEBIAN_TARGETS)
def test_debian_row_builds_and_starts_its_runtime(
    runtime_id: str, arch: str, built: BuiltImages, engine: Any
) -> None:
    target = built(runtime_id)[arch]
    image = engine.images.get(target.image_tag)
    assert image.attrs["Architecture"] == target.arch.docker
    argv, expected = expected_start(target.runtime, dpkg_query(engine, target.image_tag))
    assert run(engine, target.image_tag, argv) == expected
    assert run(engine, target.image_tag, ["uname", "-m"]) == target.arch.uname


@pytest.mark.engine
@pytest.mark.slow
@READS_ROWS
@pytest.mark.parametrize(("runtime_id", "arch"), NODE_TARGETS)
def test_node_runtime_interface_client_loads_its_native_addon(
    runtime_id: str, arch: str, built: BuiltImages, engine: Any
) -> None:
    """The addon, cross-compiled on the build machine for arm64, is an ELF file of the target's
    architecture that the image's own node loads."""
    target = built(runtime_id)[arch]
    addon = "/var/runtime/node_modules/aws-lambda-ric/dist/rapid-client.node"
    script = f"const m = require('{addon}'); console.log(typeof m.next)"
    assert run(engine, target.image_tag, ["node", "-e", script]) == "function"
    # e_machine of the ELF header: 0xb7 aarch64, 0x3e x86-64
    machine = run(engine, target.image_tag, ["od", "-An", "-tx2", "-j18", "-N2", addon])
    assert machine == {"arm64": "00b7", "x86_64": "003e"}[arch]


@pytest.mark.engine
@pytest.mark.slow
@READS_ROWS
@pytest.mark.parametrize(("runtime_id", "arch"), NODE_TARGETS)
def test_node_image_answers_an_invocation_through_the_runtime_api(
    runtime_id: str, arch: str, built: BuiltImages, engine: Any, tmp_path: Path
) -> None:
    """aws-lambda-ric (its native transport, as on Lambda) serves a handler through the
    project's Runtime API emulator; the handler requires every SDK v3 client of the row (the
    npm set aws-sdk-js-v3) without bundling them, as on AWS's Node.js 18+ images, each at the
    version runtimes.lock.json pins."""
    target = built(runtime_id)[arch]
    clients = [spec for spec in target.runtime.install.npm if spec.startswith("@aws-sdk/client-")]
    (tmp_path / "app.js").write_text(
        "const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');\n"
        "const { S3Client } = require('@aws-sdk/client-s3');\n"
        "const sdk = require('@aws-sdk/client-s3/package.json').version;\n"
        "exports.handler = async (event) => {\n"
        "  const failed = [];\n"
        "  let classes = 0;\n"
        "  for (const name of event.clients) {\n"
        "    try {\n"
        "      const m = require(name);\n"
        "      if (Object.keys(m).some((k) => k.endsWith('Client') && typeof m[k] == 'function'))\n"
        "        classes += 1;\n"
        "    } catch (e) { failed.push(`${name}: ${e.message}`); }\n"
        "  }\n"
        "  return { doubled: event.n * 2, node: process.version,\n"
        "    clients: [typeof DynamoDBClient, typeof S3Client], sdk, failed, classes };\n"
        "};\n"
    )
    tmp_path.chmod(0o755)
    (tmp_path / "app.js").chmod(0o644)
    event = json.dumps({"n": 21, "clients": clients})
    proc = lambda_images(
        "invoke", target.image_tag, "--handler", "app.handler",
        "--code", str(tmp_path), "--event", event, "--timeout", "300",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = json.loads(proc.stdout)
    assert answer["doubled"] == 42
    assert answer["node"] == run(engine, target.image_tag, ["node", "--version"])
    assert answer["clients"] == ["function", "function"]
    assert answer["failed"] == []
    assert answer["classes"] == len(clients) > 250
    s3 = next(
        p for p in Lock.load(REPO / "runtimes.lock.json").npm_packages(runtime_id)
        if p.path == "node_modules/@aws-sdk/client-s3"
    )  # fmt: skip
    assert s3.url.endswith(f"/client-s3-{answer['sdk']}.tgz")


# A handler per language that returns what Lambda gave it: the event, the machine it runs on,
# and the context's request id and remaining time.
HANDLERS = {
    "python": (
        "probe.py",
        "import platform\n\n\n"
        "def handler(event, context):\n"
        "    return {'event': event, 'machine': platform.machine(),\n"
        "            'request_id': context.aws_request_id,\n"
        "            'remaining_ms': context.get_remaining_time_in_millis()}\n",
    ),
    "nodejs": (
        "probe.js",
        "const os = require('os');\n"
        "exports.handler = async (event, context) => ({\n"
        "  event, machine: os.machine(), request_id: context.awsRequestId,\n"
        "  remaining_ms: context.getRemainingTimeInMillis() });\n",
    ),
}
INVOKED = [
    (rt, arch)
    for rt in ("python3.13.debian13", "nodejs20.x.debian13")
    for arch in MATRIX.runtime(rt).architectures
]


@pytest.mark.engine
@pytest.mark.slow
@READS_ROWS
@pytest.mark.parametrize(("runtime_id", "arch"), INVOKED)
def test_debian13_handler_gets_its_event_architecture_and_context(
    runtime_id: str, arch: str, built: BuiltImages, tmp_path: Path
) -> None:
    target = built(runtime_id)[arch]
    filename, source = HANDLERS[target.runtime.family.id]
    (tmp_path / filename).write_text(source)
    tmp_path.chmod(0o755)
    (tmp_path / filename).chmod(0o644)
    event = {"order": 7, "items": ["a", "b"]}
    proc = lambda_images(
        "invoke", target.image_tag, "--handler", "probe.handler",
        "--code", str(tmp_path), "--event", json.dumps(event), "--timeout", "60",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = json.loads(proc.stdout)
    assert answer["event"] == event
    assert answer["machine"] == target.arch.uname
    assert len(answer["request_id"]) == 36  # a UUID, as Lambda's
    assert 0 < answer["remaining_ms"] <= 60_000
