"""AWS's runtime interface emulator inside the images (issue 13, done-when 5).

`docker run -d -p HOST:8080 IMAGE probe.handler`, then a POST to the invoke URL, answers
through /usr/local/bin/aws-lambda-rie in the image (lambda-entrypoint.sh starts it when
AWS_LAMBDA_RUNTIME_API is unset), on both architectures, with the same answer as
`lambda-images invoke` of the same handler and event (which sets AWS_LAMBDA_RUNTIME_API, so
the entrypoint runs the bootstrap itself). The host port is left to the engine so that several
checkouts can run this at once.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import pytest
from cli_runner import command
from conftest import BuiltImages
from rie_http import LABEL, logs_once_they_hold, post_when_listening

from pipeline.emulator import INVOKE_PATH
from pipeline.probes import PROBE_HANDLER, probe_dir

pytestmark = [
    pytest.mark.engine,
    pytest.mark.slow,
    pytest.mark.cells("python3.11.debian12", "provided.debian12"),
]
RIE = "/usr/local/bin/aws-lambda-rie"
ELF_MACHINE = {"x86_64": 62, "arm64": 183}  # e_machine: EM_X86_64, EM_AARCH64


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
@pytest.mark.parametrize("runtime_id", ["python3.11.debian12", "provided.debian12"])
def test_docker_run_answers_through_the_rie_inside_like_invoke(
    engine: Any, built: BuiltImages, runtime_id: str, arch: str
) -> None:
    target = built(runtime_id)[arch]
    probe = probe_dir(target.runtime)
    event = {"probe": "rie-inside", "runtime": runtime_id, "arch": arch, "n": uuid.uuid4().hex}
    body = json.dumps(event).encode()

    container = engine.containers.run(
        target.image_tag,
        command=[PROBE_HANDLER],
        detach=True,
        ports={"8080/tcp": ("127.0.0.1", None)},
        volumes={str(probe): {"bind": "/var/task", "mode": "ro"}},
        labels={LABEL: "rie-inside"},
    )
    try:
        container.reload()
        port = container.ports["8080/tcp"][0]["HostPort"]
        answer = post_when_listening(f"http://127.0.0.1:{port}{INVOKE_PATH}", body, container)
        logs = logs_once_they_hold(container, "END RequestId: ")
        # The binary the entrypoint ran is the image's own, built for the image's architecture.
        code, header = container.exec_run(["od", "-An", "-tu2", "-j18", "-N2", RIE])
        assert code == 0, header
    finally:
        container.remove(force=True)

    assert json.loads(answer) == event
    # The RIE's own log lines: it ran the bootstrap with the handler, and served the request.
    assert f"(cwd=/var/task, handler={PROBE_HANDLER})" in logs, logs
    assert "START RequestId: " in logs and "END RequestId: " in logs, logs
    assert int(header.split()[0]) == ELF_MACHINE[arch]

    invoked = subprocess.run(
        command("invoke", target.image_tag, "--handler", PROBE_HANDLER, "--code", str(probe),
         "--event", body.decode()),
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(invoked.stdout) == json.loads(answer)


def test_entrypoint_without_a_handler_exits_142_before_the_rie_starts(
    engine: Any, built: BuiltImages
) -> None:
    target = built("provided.debian12")["x86_64"]
    container = engine.containers.run(
        target.image_tag, command=[], detach=True, labels={LABEL: "rie-inside"}
    )
    try:
        status = container.wait(timeout=120)
        logs = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert status["StatusCode"] == 142
    assert "expected exactly one argument, the handler" in logs
