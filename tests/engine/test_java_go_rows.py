"""The Java and Go rows against the real engine, both architectures (issue 11, and issue 13's
points for Java): `lambda-images rebuild` gives an image per architecture that passes every
conformance check and comes back the same from its branch; handlers written in Java and Go answer
`lambda-images invoke` with their event, their architecture and Lambda's context; a Java handler
that throws gets Lambda's error shape; the Java runtime names itself in AWS_EXECUTION_ENV and runs
an AWS_LAMBDA_EXEC_WRAPPER the way AWS's does."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_runner import lambda_images
from conftest import Phase
from image_tree import config_of, file_tree, uname_in

from pipeline.emulator import ExecutionEnvironment, FunctionConfig
from pipeline.lock import Lock
from pipeline.matrix import ARCHES, Matrix
from pipeline.probes import copy_readable, prepare_probe
from pipeline.settings import Settings

JAVA = {"java17.debian12": 17, "java21.debian13": 21}
GO = "go.debian12"
ROWS = [*JAVA, GO]
# Each test names the cells it reads, so that a run can leave out a cell (--rows, FULL_ONLY in
# conftest.py) and keep the tests of the others.
pytestmark = [pytest.mark.engine, pytest.mark.slow]
ARCH_NAMES = ["x86_64", "arm64"]
# What AWS's JVM gets on a 512 MB function (heap 85 %, metaspace 10 %, code cache 5 %).
JVM_FLAGS_512 = [
    "-XX:MaxHeapSize=445645k",
    "-XX:MaxMetaspaceSize=52429k",
    "-XX:ReservedCodeCacheSize=26214k",
    "-XX:+UseSerialGC",
    "-XX:+TieredCompilation",
    "-XX:TieredStopAtLevel=1",
    "-Djava.net.preferIPv4Stack=true",
]
ELF_MACHINE = {"x86_64": 62, "arm64": 183}

Probes = Callable[[str, str], Path]


def image_of(phase: Phase, runtime_id: str, arch: str) -> str:
    """The phase's image of the cell, by id (other tests may retag the runtime's image)."""
    return str(phase.build_record(runtime_id, arch).image_id)


@pytest.fixture(scope="module")
def probes(matrix: Matrix, tmp_path_factory: pytest.TempPathFactory) -> Probes:
    """``probes(runtime, arch)``: the runtime's probe compiled on the host, as the conformance
    stage compiles it."""
    made: dict[tuple[str, str], Path] = {}
    settings = Settings.from_environ()

    def make(runtime_id: str, arch: str) -> Path:
        if (runtime_id, arch) not in made:
            folder = tmp_path_factory.mktemp(f"probe-{runtime_id}-{arch}")
            probe = prepare_probe(
                matrix.runtime(runtime_id),
                ARCHES[arch],
                folder / "code",
                lock=Lock.for_matrix(matrix.path),
                cache=settings.cache / "inputs",
                environ=settings.environ,
            )
            made[(runtime_id, arch)] = probe.code
        return made[(runtime_id, arch)]

    return make


def invoke(image: str, handler: str, code: Path, event: dict[str, Any]) -> tuple[int, Any, str]:
    proc = lambda_images(
        "invoke", image, "--handler", handler, "--code", str(code),
        "--event", json.dumps(event), "--memory", "512", "--timeout", "120",
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout), proc.stderr


# --- 11.1: rebuild, conformance, snapshot, branch round trip ------------------------------------


@pytest.mark.cells(*ROWS)
@pytest.mark.parametrize("runtime_id", ROWS)
def test_both_architectures_pass_every_check_and_are_snapshotted(
    phase: Phase, engine: Any, runtime_id: str
) -> None:
    for arch in ARCH_NAMES:
        image = image_of(phase, runtime_id, arch)
        assert engine.images.get(image).attrs["Architecture"] == ARCHES[arch].docker
        report = phase.conformance(runtime_id, arch)
        assert report.ok, report.summary()
        assert [c.name for c in report.checks] == [
            "invocation", "read-only-rootfs", "readable-files", "entrypoint", "size",
            "architecture", "manifest", "no-credentials",
        ]  # fmt: skip
        assert phase.snapshot(runtime_id, arch).layers
        assert uname_in(engine, image) == ARCHES[arch].uname
    assert len(phase.branch(runtime_id)) == 40


@pytest.mark.cells(*ROWS)
@pytest.mark.parametrize("runtime_id", ROWS)
def test_branch_clone_rebuilds_the_same_image(
    phase: Phase,
    engine: Any,
    tmp_path: Path,
    cleanup_images: list[str],
    runtime_id: str,
) -> None:
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "--quiet", "-b", runtime_id, phase.remote, str(clone)], check=True
    )
    for arch, folder in (("x86_64", clone), ("arm64", clone / "arm64")):
        tag = f"javago-test/{runtime_id}:{arch}-from-branch"
        cleanup_images.append(tag)
        engine.images.build(
            path=str(folder), dockerfile=f"Dockerfile.{runtime_id}", tag=tag, rm=True
        )
        original = image_of(phase, runtime_id, arch)
        assert config_of(engine, tag) == config_of(engine, original)
        assert file_tree(engine, tag) == file_tree(engine, original)


# --- 11.2, 11.3, 13.1: handlers in Java and Go through `lambda-images invoke` --------------------


@pytest.mark.cells(*JAVA)
@pytest.mark.parametrize("arch", ARCH_NAMES)
@pytest.mark.parametrize("runtime_id", list(JAVA))
def test_java_handler_answers_with_its_event_arch_and_context(
    phase: Phase, probes: Probes, runtime_id: str, arch: str
) -> None:
    image = image_of(phase, runtime_id, arch)
    event = {"probe": "java", "n": [1, 2, 3], "arch": arch}
    code, answer, stderr = invoke(image, "example.Probe::describe", probes(runtime_id, arch), event)
    assert code == 0, stderr[-2000:]
    assert answer["event"] == event
    assert answer["arch"] == {"x86_64": "amd64", "arm64": "aarch64"}[arch]
    assert answer["javaVersion"] == JAVA[runtime_id]
    assert len(answer["requestId"]) == 36 and answer["requestId"].count("-") == 4
    assert 0 < answer["remainingMs"] <= 120_000
    assert answer["memoryMB"] == 512
    # 13.1: the runtime names itself as AWS's does.
    assert answer["executionEnv"] == f"AWS_Lambda_java{JAVA[runtime_id]}"
    # The JVM runs with AWS's flags, its heap sized from the function's memory.
    flags = answer["jvmArguments"]
    assert [f for f in flags if f in JVM_FLAGS_512] == JVM_FLAGS_512
    assert answer["classPath"].split(":")[-3:] == [
        "/var/task",
        "/var/task/lib/*",
        "/opt/java/lib/*",
    ]
    # The runtime client's native library that this JVM loaded is the one for its architecture.
    assert answer["nativeLibrary"] == "/tmp/.libaws-lambda-jni.so"
    assert answer["nativeLibraryMachine"] == ELF_MACHINE[arch]


@pytest.mark.cells(*JAVA)
@pytest.mark.parametrize("arch", ARCH_NAMES)
@pytest.mark.parametrize("runtime_id", list(JAVA))
def test_java_handler_that_throws_gets_lambdas_error_shape(
    phase: Phase, probes: Probes, runtime_id: str, arch: str
) -> None:
    image = image_of(phase, runtime_id, arch)
    event = {"reason": f"asked on {arch}"}
    code, answer, _ = invoke(image, "example.Probe::fail", probes(runtime_id, arch), event)
    assert code == 9  # InvocationError
    assert answer["errorType"] == "example.ProbeFailure"
    assert answer["errorMessage"] == f"the probe was asked to fail: asked on {arch}"
    assert answer["stackTrace"][0].startswith("example.Probe.fail(Probe.java:")


@pytest.mark.cells(GO)
@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_go_bootstrap_answers_with_its_event_arch_and_context(
    phase: Phase, probes: Probes, arch: str
) -> None:
    image = image_of(phase, GO, arch)
    event = {"describe": True, "probe": "go", "arch": arch}
    code, answer, stderr = invoke(image, "bootstrap", probes(GO, arch), event)
    assert code == 0, stderr[-2000:]
    assert answer["event"] == event
    assert answer["arch"] == ARCHES[arch].docker
    assert answer["executable"] == "/var/task/bootstrap"
    assert len(answer["requestId"]) == 36 and answer["requestId"].count("-") == 4
    assert 0 < answer["remainingMs"] <= 120_000
    assert answer["memoryMB"] == 512


@pytest.mark.cells(GO)
def test_go_handler_named_like_go1x_runs_that_executable(
    phase: Phase, probes: Probes, tmp_path: Path
) -> None:
    """AWS's go1.x ran the executable the handler names; the go image still does."""
    image = image_of(phase, GO, "x86_64")
    code_dir = copy_readable(probes(GO, "x86_64"), tmp_path / "code")
    (code_dir / "bootstrap").rename(code_dir / "main")
    code, answer, stderr = invoke(image, "main", code_dir, {"describe": True})
    assert code == 0, stderr[-2000:]
    assert answer["executable"] == "/var/task/main"
    assert answer["handler"] == "main"


# --- 13.2: AWS_LAMBDA_EXEC_WRAPPER ---------------------------------------------------------------

WRAPPER = '#!/bin/sh\nexport PROBE_WRAPPER_MARKER="wrapped $# $1"\nexec "$@"\n'


def run_with_wrapper(
    engine: Any, image: str, code: Path, wrapper: str
) -> tuple[Any, list[str], Any]:
    config = FunctionConfig(
        image=image,
        handler="example.Probe::describe",
        code=code,
        timeout=120,
        memory_mb=512,
        environment={"AWS_LAMBDA_EXEC_WRAPPER": wrapper},
    )
    lines: list[str] = []
    with ExecutionEnvironment(config, engine, sink=lines.append) as environment:
        result = environment.invoke(b'{"wrapped": true}')
    return result, lines, json.loads(result.payload)


@pytest.mark.cells(*JAVA)
@pytest.mark.parametrize("arch", ARCH_NAMES)
@pytest.mark.parametrize("runtime_id", list(JAVA))
def test_exec_wrapper_runs_first_with_the_runtime_command_line(
    phase: Phase, probes: Probes, engine: Any, tmp_path: Path, runtime_id: str, arch: str
) -> None:
    image = image_of(phase, runtime_id, arch)
    code = copy_readable(probes(runtime_id, arch), tmp_path / "code")
    (code / "wrapper").write_text(WRAPPER)
    (code / "wrapper").chmod(0o755)
    result, lines, answer = run_with_wrapper(engine, image, code, "/var/task/wrapper")
    assert result.ok, lines[-5:]
    assert answer["event"] == {"wrapped": True}
    # The wrapper got the runtime's whole command line: `java <flags…> <main class> <handler>`.
    marker = answer["wrapperMarker"].split(" ")
    assert marker[0] == "wrapped" and marker[2] == "java"
    # java, the flags above, -Xshare:auto, -classpath and its value, the main class, the handler
    assert int(marker[1]) == 1 + len(JVM_FLAGS_512) + 5


@pytest.mark.cells("java17.debian12")
@pytest.mark.parametrize("arch", ARCH_NAMES)
@pytest.mark.parametrize(
    ("case", "status", "words"),
    [("missing", 127, "does not exist"), ("not-executable", 126, "is not an executable file")],
)
def test_broken_exec_wrapper_ends_init_with_its_exit_code(
    phase: Phase,
    probes: Probes,
    engine: Any,
    tmp_path: Path,
    case: str,
    status: int,
    words: str,
    arch: str,
) -> None:
    image = image_of(phase, "java17.debian12", arch)
    code = copy_readable(probes("java17.debian12", arch), tmp_path / "code")
    if case == "not-executable":
        (code / "wrapper").write_text(WRAPPER)
        (code / "wrapper").chmod(0o644)
    result, lines, answer = run_with_wrapper(engine, image, code, "/var/task/wrapper")
    assert result.error_type == "Runtime.ExitError"
    assert answer["errorType"] == "Runtime.ExitError"
    assert answer["errorMessage"].endswith(f"Runtime exited with error: exit status {status}")
    assert any(f"AWS_LAMBDA_EXEC_WRAPPER /var/task/wrapper {words}" in line for line in lines)
