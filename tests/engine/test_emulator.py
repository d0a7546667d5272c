"""Local invocation through the Runtime API emulator: `lambda-images invoke` and `serve`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cli_runner import command, lambda_images
from conftest import REPO, BuiltImages

from pipeline.emulator import (
    CONTAINER_LABEL,
    INVOKE_PATH,
    ExecutionEnvironment,
    FunctionConfig,
)
from pipeline.emulator.container import OWNER_LABEL, is_stale, owner

pytestmark = pytest.mark.cells("python3.11.debian12", "provided.debian12")

PYTHON_APP = """
import os, sys, time, uuid

BOOT = uuid.uuid4().hex  # one value per execution environment (init)
BUSY = "/tmp/busy"


def handler(event, context):
    return {
        "event": event,
        "function_name": context.function_name,
        "arn": context.invoked_function_arn,
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "client": sys.modules["awslambdaric"].__file__,
        "uid": os.getuid(),
        "memory": os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
        "root_mount": [m.split()[3] for m in open("/proc/mounts") if m.split()[1] == "/"][0],
        "tmp_writable": os.access("/tmp", os.W_OK),
        "client_context": context.client_context and context.client_context.custom,
    }


def fail(event, context):
    raise ValueError("the event was " + event["what"])


def sleep(event, context):
    time.sleep(event["seconds"])
    return "woke up"


def hog(event, context):
    chunks = [bytearray(1024 * 1024) for _ in range(event["mb"])]
    return len(chunks)


def one_at_a_time(event, context):
    # An invocation that finds another one running in the same environment reports it.
    overlap = os.path.exists(BUSY)
    open(BUSY, "w").close()
    time.sleep(event.get("hold", 0))
    os.remove(BUSY)
    return {"n": event["n"], "boot": BOOT, "overlap": overlap}
"""

ECHO_BOOTSTRAP = r"""#!/bin/sh
# A custom runtime in shell: fetch the next event, post it back as the response.
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
HEADERS=/tmp/headers
while true; do
  EVENT="$(curl -sS -D "$HEADERS" "$API/invocation/next")"
  ID="$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$HEADERS" | cut -d' ' -f2 | tr -d '\r')"
  curl -sS -X POST "$API/invocation/$ID/response" --data-binary "$EVENT" >/dev/null
done
"""

EXITING_BOOTSTRAP = """#!/bin/sh
echo "bootstrap: missing configuration, giving up" >&2
exit 3
"""


def code_dir(root: Path, files: dict[str, str]) -> Path:
    """Function code readable by Lambda's non-root user (pytest's tmp dirs are 0700)."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    for name, text in files.items():
        path = root / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        path.chmod(0o755 if name == "bootstrap" else 0o644)
    return root


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return lambda_images(*args, timeout=600)


def emulator_containers(engine: Any) -> list[Any]:
    return list(engine.containers.list(all=True, filters={"label": CONTAINER_LABEL}))


@pytest.fixture
def no_leaks(engine: Any) -> Iterator[None]:
    """The test must leave no function container behind: none of this process's, and none whose
    owner (a `lambda-images` process the test started) has exited. Containers of processes that
    still run are another lane's, on the same engine, and not counted."""
    before = {c.id for c in emulator_containers(engine)}
    yield
    me = owner()
    leaked = [
        c.name
        for c in emulator_containers(engine)
        if c.id not in before
        and (c.labels.get(OWNER_LABEL) == me or is_stale(c.labels.get(OWNER_LABEL, "")))
    ]
    assert not leaked, f"containers left behind: {leaked}"


@pytest.fixture(scope="module")
def python_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return code_dir(tmp_path_factory.mktemp("py") / "code", {"app.py": PYTHON_APP})


@pytest.fixture(scope="module")
def echo_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return code_dir(tmp_path_factory.mktemp("sh") / "code", {"bootstrap": ECHO_BOOTSTRAP})


# --- fast: the Runtime API server on its own -----------------------------------------------------


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_invoke_python_handler_returns_its_json(
    built: BuiltImages, python_code: Path, arch: str, no_leaks: None
) -> None:
    image = built("python3.11.debian12")[arch].image_tag
    result = run_cli(
        "invoke", image, "--handler", "app.handler", "--code", str(python_code),
        "--event", '{"question": 42}',
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["event"] == {"question": 42}
    assert response["function_name"] == "test_function"
    assert response["arn"] == "arn:aws:lambda:us-east-1:012345678912:function:test_function"
    assert response["remaining_ms"] > 0
    assert response["memory"] == "3008"
    assert response["uid"] != 0
    assert response["root_mount"].split(",")[0] == "ro"
    assert response["tmp_writable"] is True
    # The image's own runtime interface client is the one talking to the emulator.
    assert response["client"] == "/var/runtime/awslambdaric/__init__.py"


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_invoke_shell_bootstrap_on_provided_returns_the_event(
    built: BuiltImages, echo_code: Path, arch: str, tmp_path: Path, no_leaks: None
) -> None:
    image = built("provided.debian12")[arch].image_tag
    event = tmp_path / "event.json"
    event.write_text('{"records": [1, 2, 3], "source": "test"}')
    result = run_cli(
        "invoke", image, "--handler", "function.handler", "--code", str(echo_code),
        "--event", f"@{event}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"records": [1, 2, 3], "source": "test"}


@pytest.mark.engine
@pytest.mark.slow
def test_handler_that_raises_gives_lambdas_error_shape(
    built: BuiltImages, python_code: Path, no_leaks: None
) -> None:
    image = built("python3.11.debian12")["x86_64"].image_tag
    result = run_cli(
        "invoke", image, "--handler", "app.fail", "--code", str(python_code),
        "--event", '{"what": "odd"}',
    )  # fmt: skip
    assert result.returncode == 9
    error = json.loads(result.stdout)
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "the event was odd"
    assert "ValueError: the event was odd" in result.stderr


@pytest.mark.engine
@pytest.mark.slow
def test_timeout_ends_the_invocation_and_the_next_one_starts_fresh(
    engine: Any, built: BuiltImages, python_code: Path, no_leaks: None
) -> None:
    image = built("python3.11.debian12")["x86_64"].image_tag
    config = FunctionConfig(image=image, handler="app.sleep", code=python_code, timeout=2)
    with ExecutionEnvironment(config, engine) as environment:
        timed_out = environment.invoke(b'{"seconds": 600}')
        assert timed_out.error_type == "Sandbox.Timedout"
        assert json.loads(timed_out.payload) == {
            "errorMessage": "Task timed out after 2.00 seconds",
            "errorType": "Sandbox.Timedout",
        }
        # The timed-out environment was killed; the next invocation goes through init again.
        woke = environment.invoke(b'{"seconds": 0}')
        assert woke.ok
        assert json.loads(woke.payload) == "woke up"
        assert environment.inits == 2


@pytest.mark.engine
@pytest.mark.slow
def test_function_over_its_memory_limit_is_killed(
    built: BuiltImages, python_code: Path, no_leaks: None
) -> None:
    image = built("python3.11.debian12")["x86_64"].image_tag
    result = run_cli(
        "invoke", image, "--handler", "app.hog", "--code", str(python_code), "--memory", "128",
        "--event", '{"mb": 512}',
    )  # fmt: skip
    assert result.returncode == 9
    error = json.loads(result.stdout)
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"].endswith("Runtime exited with error: signal: killed")


@pytest.mark.engine
@pytest.mark.slow
def test_oversized_event_is_refused_before_the_function_runs(
    engine: Any, built: BuiltImages, echo_code: Path, no_leaks: None
) -> None:
    image = built("provided.debian12")["x86_64"].image_tag
    config = FunctionConfig(image=image, handler="x", code=echo_code)
    with ExecutionEnvironment(config, engine) as environment:
        result = environment.invoke(b'"' + b"x" * (6 * 1024 * 1024) + b'"')
        assert result.error_type == "RequestTooLargeException"
        assert "exceeded maximum allowed payload size (6291456 bytes)" in result.error_message()
        assert environment.inits == 0


@pytest.mark.engine
@pytest.mark.slow
def test_client_context_reaches_the_handler(
    engine: Any, built: BuiltImages, python_code: Path, no_leaks: None
) -> None:
    image = built("python3.11.debian12")["x86_64"].image_tag
    config = FunctionConfig(image=image, handler="app.handler", code=python_code, timeout=60)
    with ExecutionEnvironment(config, engine) as environment:
        result = environment.invoke(b"{}", client_context='{"custom": {"tenant": "blue"}}')
    assert json.loads(result.payload)["client_context"] == {"tenant": "blue"}


@pytest.mark.engine
@pytest.mark.slow
def test_bootstrap_exiting_during_init_is_an_init_error(
    built: BuiltImages, tmp_path: Path, no_leaks: None
) -> None:
    image = built("provided.debian12")["x86_64"].image_tag
    code = code_dir(tmp_path / "code", {"bootstrap": EXITING_BOOTSTRAP})
    result = run_cli("invoke", image, "--handler", "x", "--code", str(code), "--timeout", "30")
    assert result.returncode == 9
    error = json.loads(result.stdout)
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"].endswith("Runtime exited with error: exit status 3")
    assert "missing configuration, giving up" in result.stderr


@pytest.mark.engine
@pytest.mark.slow
def test_missing_handler_module_is_the_runtimes_init_error(
    engine: Any, built: BuiltImages, python_code: Path, no_leaks: None
) -> None:
    image = built("python3.11.debian12")["x86_64"].image_tag
    config = FunctionConfig(image=image, handler="nowhere.handler", code=python_code, timeout=30)
    with ExecutionEnvironment(config, engine) as environment:
        result = environment.invoke(b"{}")
        assert result.error_type == "Runtime.ImportModuleError"
        assert "No module named 'nowhere'" in result.error_message()
        # The environment is started again (and fails again) rather than hanging.
        again = environment.invoke(b"{}")
        assert again.error_type == "Runtime.ImportModuleError"
        assert environment.inits == 2


@pytest.mark.engine
@pytest.mark.slow
def test_serve_answers_sequential_and_queued_concurrent_invocations(
    engine: Any, built: BuiltImages, python_code: Path, no_leaks: None
) -> None:
    image = built("python3.11.debian12")["x86_64"].image_tag
    server = subprocess.Popen(
        command("serve", image, "--handler", "app.one_at_a_time", "--code", str(python_code),
         "--port", "0"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith(INVOKE_PATH), url

        def call(n: int, hold: float = 0) -> dict[str, Any]:
            body = json.dumps({"n": n, "hold": hold}).encode()
            status, headers, payload = _http("POST", url, body)
            assert status == 200
            assert "X-Amz-Function-Error" not in headers
            return dict(json.loads(payload))

        sequential = [call(n) for n in range(50)]
        with ThreadPoolExecutor(max_workers=10) as pool:
            concurrent = list(pool.map(lambda n: call(n, hold=0.2), range(100, 110)))
        answers = sequential + concurrent
        assert [a["n"] for a in answers] == [*range(50), *range(100, 110)]
        # One execution environment served them all, one invocation at a time.
        assert len({a["boot"] for a in answers}) == 1
        assert not any(a["overlap"] for a in answers)
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=120)
    assert server.returncode == 0, stderr


def test_cli_refuses_code_other_users_cannot_read(tmp_path: Path) -> None:
    code = tmp_path / "private"
    code.mkdir(mode=0o700)
    result = run_cli("invoke", "some/image:tag", "--code", str(code))
    assert result.returncode == 2
    assert "not readable by other users" in result.stderr
    assert f"chmod o+rx {code}" in result.stderr


def test_cli_refuses_an_event_that_is_not_json() -> None:
    result = run_cli("invoke", "some/image:tag", "--event", "{oops")
    assert result.returncode == 2
    assert "not JSON" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- an engine whose network is not this host's --------------------------------------------------


@pytest.fixture(scope="module")
def namespaced_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A second engine (scripts/engine26) in a network namespace of its own, as a rootless
    engine, a VM or a remote engine is: its containers' 127.0.0.1 is neither this host's nor
    this test's. Names and addresses of its own (from this process's id), so another run's
    engine26 is untouched. Yields the environment that points the CLI at it."""
    from conftest import require_engine

    if os.geteuid() != 0:
        reason = "an engine in its own network namespace needs root (ip netns, dockerd)"
        if require_engine():
            pytest.fail(f"LAMBDA_IMAGES_REQUIRE_ENGINE is set and {reason}")
        pytest.skip(reason)
    n = os.getpid() % 250
    run_dir = Path(f"/run/lambda-images-netns-{os.getpid()}")
    instance = {
        "ENGINE26_NETNS": f"lbi-netns-{os.getpid()}",
        "ENGINE26_VETH": f"lbi{os.getpid() % 100000}",
        "ENGINE26_VETH_ADDR": f"10.227.{n}.0",
        "ENGINE26_NETNS_BIP": f"10.228.{n}.1/24",
        "ENGINE26_RUN_DIR": str(run_dir),
        "ENGINE26_DATA_DIR": f"/var/lib/lambda-images-netns-{os.getpid()}",
        "ENGINE26_CGROUP_PARENT": f"lambda-images-netns-{os.getpid()}",
        "ENGINE26_LOG": str(tmp_path_factory.mktemp("netns-engine") / "dockerd.log"),
    }
    script = [str(REPO / "scripts" / "engine26")]
    env = {**os.environ, **instance}
    started = subprocess.run([*script, "start"], env=env, capture_output=True, text=True)
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        yield {**os.environ, "DOCKER_HOST": f"unix://{run_dir}/docker.sock"}
    finally:
        subprocess.run([*script, "stop"], env=env, capture_output=True, check=False)


@pytest.mark.engine
@pytest.mark.slow
def test_invoke_and_serve_answer_alike_on_an_engine_in_another_network_namespace(
    engine: Any,
    built: BuiltImages,
    echo_code: Path,
    namespaced_engine: dict[str, str],
) -> None:
    """No host networking: the function's container reaches its Runtime API over the network it
    really has (routed out of the engine's namespace to this host), and `invoke` and `serve` give
    the answers they give on the machine's engine."""
    import docker

    image = built("provided.debian12")["x86_64"].image_tag
    other = docker.DockerClient(base_url=namespaced_engine["DOCKER_HOST"])
    try:
        other.images.load(b"".join(engine.images.get(image).save(named=True)))
        # The engine is not in our network namespace: its dockerd's is another one.
        dockerd = int(
            Path(namespaced_engine["DOCKER_HOST"][7:]).with_name("dockerd.pid").read_text()
        )
        assert os.readlink(f"/proc/{dockerd}/ns/net") != os.readlink("/proc/self/ns/net")
    finally:
        other.close()
    events = ['{"records": [1, 2, 3], "source": "test"}', '{"n": 2}']
    args = ["--handler", "function.handler", "--code", str(echo_code), "--timeout", "60"]

    def invoke(env: dict[str, str] | None, event: str) -> subprocess.CompletedProcess[str]:
        return lambda_images("invoke", image, *args, "--event", event, env=env, timeout=600)

    here = [invoke(None, event) for event in events]
    there = [invoke(namespaced_engine, event) for event in events]
    assert [json.loads(r.stdout) for r in here] == [json.loads(e) for e in events]
    assert [(r.returncode, r.stdout) for r in there] == [(r.returncode, r.stdout) for r in here]
    assert "--network=host" not in there[0].stderr and "--add-host=runtime-" in there[0].stderr

    # The control: told to use 127.0.0.1, the container finds its own loopback, not this host's,
    # and the invocation fails as Lambda's does when the runtime cannot reach its API.
    local = invoke({**namespaced_engine, "LAMBDA_IMAGES_RUNTIME_API_HOST": "127.0.0.1"}, "{}")
    assert local.returncode != 0
    assert "never reached its Runtime API on 127.0.0.1 (configured)" in local.stderr

    server = subprocess.Popen(
        command("serve", image, *args, "--port", "0"), env=namespaced_engine,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        answers = [_http("POST", url, event.encode()) for event in events]
        assert [(status, json.loads(body)) for status, _, body in answers] == [
            (200, json.loads(event)) for event in events
        ]
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=120)
    assert server.returncode == 0, stderr
