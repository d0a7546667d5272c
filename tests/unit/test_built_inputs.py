"""Built inputs (AWS's runtime interface emulator from its Go module): every row of the matrix
carries one, the lock pins the module and each binary, and a cell whose pins are missing or
stale refuses to build before any go command runs."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import pytest

from pipeline import gotool, inputs
from pipeline.errors import ConfigurationError, InputError
from pipeline.gobuild import Built
from pipeline.inputs import fetch_inputs
from pipeline.lock import Lock, LockedModule
from pipeline.matrix import ARCHES, Input, Matrix, load_matrix

REPO = Path(__file__).resolve().parent.parent.parent
RIE_MODULE = "github.com/aws/aws-lambda-runtime-interface-emulator"


def test_every_runtime_carries_the_rie_built_from_its_go_module(matrix: Matrix) -> None:
    assert matrix.runtimes
    for runtime in matrix.runtimes:
        emulators = dict(runtime.inputs).get("emulator")
        assert emulators is not None, runtime.id
        (rie,) = emulators
        assert rie.build is not None and rie.build.module == RIE_MODULE, runtime.id
        assert rie.build.package == "./cmd/aws-lambda-rie"
        assert rie.filename("arm64") == rie.filename("x86_64") == "aws-lambda-rie"
        assert rie.version.startswith("v0.0.0-")  # a pseudo-version: release tags are not semver
        assert rie.release


def test_the_checked_in_lock_pins_the_rie_for_both_architectures(matrix: Matrix) -> None:
    lock = Lock.for_matrix(matrix.path)
    rie = dict(matrix.runtime("python3.11.debian12").inputs)["emulator"][0]
    assert rie.build is not None
    module = lock.go_module("python3.11.debian12", "rie", rie.build.module, rie.version)
    assert module.sum.startswith("h1:")
    pinned = lock.inputs["rie"]
    assert set(pinned) == {"x86_64", "arm64"}
    assert pinned["x86_64"] != pinned["arm64"]
    assert all(len(v or "") == 64 for v in pinned.values())


def _copy_matrix(tmp_path: Path) -> Path:
    shutil.copy(REPO / "runtimes.yaml", tmp_path / "runtimes.yaml")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    return tmp_path / "runtimes.yaml"


def test_an_unlocked_rie_fails_the_cell_naming_the_lock_command(tmp_path: Path) -> None:
    matrix = load_matrix(_copy_matrix(tmp_path))
    lock = Lock(path=tmp_path / "runtimes.lock.json")
    target = matrix.targets([matrix.runtime("provided.debian12")], ["arm64"])[0]
    with pytest.raises(InputError, match=r"lambda-images lock provided\.debian12"):
        fetch_inputs(target, lock, tmp_path / "context", tmp_path / "cache", environ={})
    assert not (tmp_path / "cache").exists()


def test_a_lock_for_another_module_version_counts_as_unlocked(tmp_path: Path) -> None:
    matrix = load_matrix(_copy_matrix(tmp_path))
    lock = Lock.for_matrix(REPO / "runtimes.yaml")
    lock.path = tmp_path / "runtimes.lock.json"
    lock.go["rie"] = LockedModule(
        module=RIE_MODULE, version="v0.0.0-20250101000000-000000000000", sum=lock.go["rie"].sum
    )
    target = matrix.targets([matrix.runtime("provided.debian12")], ["x86_64"])[0]
    with pytest.raises(InputError, match=r"is unlocked in runtimes\.lock\.json"):
        fetch_inputs(target, lock, tmp_path / "context", tmp_path / "cache", environ={})


def test_the_lock_round_trips_the_go_module(tmp_path: Path) -> None:
    lock = Lock(path=tmp_path / "runtimes.lock.json")
    lock.go["rie"] = LockedModule(module=RIE_MODULE, version="v1.2.3", sum="h1:" + "x" * 43 + "=")
    lock.save()
    assert Lock.load(lock.path).go == lock.go


def test_a_malformed_go_sum_in_the_lock_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "runtimes.lock.json"
    entry = {"module": RIE_MODULE, "version": "v1.2.3", "sum": "sha256:abc"}
    path.write_text(json.dumps({"version": 1, "go": {"rie": entry}}))
    with pytest.raises(ConfigurationError, match=r"go\.rie\.sum.*expected a go\.sum hash"):
        Lock.load(path)


def test_the_go_environment_verifies_modules_and_builds_reproducibly(matrix: Matrix) -> None:
    rie = dict(matrix.runtime("provided.debian12").inputs)["emulator"][0]
    assert rie.build is not None
    caller = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "GONOSUMDB": "*",
        "GONOSUMCHECK": "1",
        "GOSUMDB": "off",
        "GOPRIVATE": "github.com/aws",
        "GOINSECURE": "*",
        "GOFLAGS": "-mod=mod",
        "CGO_ENABLED": "1",
        "GOAMD64": "v3",
    }
    env = gotool.environment(ARCHES["arm64"], rie.build.toolchain, caller)
    for name in ("GONOSUMDB", "GONOSUMCHECK", "GOSUMDB", "GOPRIVATE", "GOINSECURE"):
        assert name not in env
    assert env["GOFLAGS"] == "-mod=readonly"
    assert env["CGO_ENABLED"] == "0"
    assert (env["GOOS"], env["GOARCH"]) == ("linux", "arm64")
    assert env["GOAMD64"] == "v1"
    assert env["GOTOOLCHAIN"] == rie.build.toolchain
    assert (env["PATH"], env["HOME"]) == ("/usr/bin", "/root")
    assert gotool.environment(ARCHES["x86_64"], "go1.26.8", caller)["GOARCH"] == "amd64"


def test_two_processes_that_need_one_pinned_binary_build_it_once(
    matrix: Matrix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo and a test lane starting together on a new machine: the second waits for the
    first one's build and takes its file from the cache."""
    payload = b"an emulator binary\n"
    expected = hashlib.sha256(payload).hexdigest()
    calls = tmp_path / "builds"

    def build(item: Input, arch: str, dest: Path, **kwargs: object) -> Built:
        with calls.open("a") as record:
            record.write(f"{os.getpid()} {arch}\n")
        time.sleep(0.5)  # long enough for the other process to arrive meanwhile
        dest.write_bytes(payload)
        return Built(path=dest, sha256=expected, module_sum="h1:pinned")

    monkeypatch.setattr(inputs, "build_input", build)
    rie = dict(matrix.runtime("provided.debian12").inputs)["emulator"][0]
    cache = tmp_path / "cache"
    args = (rie, "x86_64", expected, "h1:pinned", cache, "provided.debian12", {})
    fork = multiprocessing.get_context("fork")
    workers = [fork.Process(target=inputs._build_into_cache, args=args) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert [w.exitcode for w in workers] == [0, 0]
    assert len(calls.read_text().splitlines()) == 1
    assert (cache / expected).read_bytes() == payload
