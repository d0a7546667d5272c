"""One Go toolchain policy: the RIE (a built input) and the Go probe are built in the same
environment, by the same runner, which echoes each go command and turns a failure into one
InputError. A stand-in ``go`` on a PATH of the test's own shows what is run; no Go is needed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pipeline import gotool
from pipeline.errors import InputError
from pipeline.matrix import ARCHES, Matrix
from pipeline.probes import go_toolchain

# Prints its arguments and its Go variables; `go fail …` fails as a compiler does.
STAND_IN = """#!/bin/sh
if [ "$1" = fail ]; then
  echo "go: downloading nothing" >&2
  echo "main.go:3:1: syntax error" >&2
  exit 3
fi
echo "args: $*"
echo "GOTOOLCHAIN=$GOTOOLCHAIN GOFLAGS=$GOFLAGS GOARCH=$GOARCH CGO_ENABLED=$CGO_ENABLED"
"""


@pytest.fixture
def path_with_go(tmp_path: Path) -> str:
    folder = tmp_path / "bin"
    folder.mkdir()
    go = folder / "go"
    go.write_text(STAND_IN)
    go.chmod(go.stat().st_mode | stat.S_IXUSR)
    return str(folder)


def test_the_probe_is_built_with_the_toolchain_the_rie_pins(matrix: Matrix) -> None:
    runtime = matrix.runtime("go.debian12")
    (rie,) = dict(runtime.inputs)["emulator"]
    assert rie.build is not None
    assert go_toolchain(runtime) == rie.build.toolchain


def test_only_where_modules_come_from_and_the_caches_pass_through() -> None:
    caller = {
        "PATH": "/usr/bin",
        "HTTPS_PROXY": "http://127.0.0.1:3128",
        "GOPROXY": "http://127.0.0.1:3000",
        "GOPATH": "/var/go",
        "GOMODCACHE": "/var/go/mod",
        "GOCACHE": "/var/go/build",
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-mod=mod",
        "GONOSUMDB": "*",
        "GOEXPERIMENT": "arenas",
        "CGO_ENABLED": "1",
    }
    env = gotool.environment(ARCHES["arm64"], "go1.26.8", caller)
    assert {k: v for k, v in env.items() if k in caller and env[k] == caller[k]} == {
        "PATH": "/usr/bin",
        "HTTPS_PROXY": "http://127.0.0.1:3128",
        "GOPROXY": "http://127.0.0.1:3000",
        "GOPATH": "/var/go",
        "GOMODCACHE": "/var/go/mod",
        "GOCACHE": "/var/go/build",
    }
    assert (env["GOTOOLCHAIN"], env["GOFLAGS"], env["CGO_ENABLED"]) == (
        "go1.26.8",
        "-mod=readonly",
        "0",
    )
    assert "GONOSUMDB" not in env and "GOEXPERIMENT" not in env
    fresh = gotool.environment(ARCHES["x86_64"], "go1.26.8", caller, gocache=Path("/tmp/c"))
    assert (fresh["GOARCH"], fresh["GOCACHE"]) == ("amd64", "/tmp/c")


def test_a_build_runs_go_build_reproducibly_and_is_echoed(
    path_with_go: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = gotool.environment(ARCHES["arm64"], "go1.26.8", {"PATH": path_with_go})
    out = tmp_path / "out" / "aws-lambda-rie"
    gotool.build("./cmd/x", out, env=env, cwd=tmp_path, what="rie/arm64", ldflags=["-s", "-w"])
    assert out.parent.is_dir()
    stderr = capsys.readouterr().err
    assert f"+ go build -trimpath -buildvcs=false '-ldflags=-s -w' -o {out} ./cmd/x" in stderr
    printed = gotool.run(["env"], env=env, cwd=tmp_path, what="x")
    assert printed.splitlines()[1] == (
        "GOTOOLCHAIN=go1.26.8 GOFLAGS=-mod=readonly GOARCH=arm64 CGO_ENABLED=0"
    )


def test_a_failing_go_command_is_one_error_with_its_last_lines(
    path_with_go: str, tmp_path: Path
) -> None:
    with pytest.raises(InputError) as caught:
        gotool.run(["fail", "x"], env={"PATH": path_with_go}, cwd=tmp_path, what="the Go probe")
    assert str(caught.value) == (
        "the Go probe: go fail failed (exit 3): go: downloading nothing | main.go:3:1: syntax error"
    )


def test_a_missing_go_is_one_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^rie/x86_64: `go` is not installed on this machine"):
        gotool.run(["version"], env={"PATH": str(tmp_path)}, cwd=tmp_path, what="rie/x86_64")
