"""Every family's probe (templates/<family>/probe/), the function the conformance checks invoke,
is found by what its folder holds; a family without one is one clear error, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import InputError
from pipeline.lock import Lock
from pipeline.matrix import ARCHES, Matrix
from pipeline.probes import GO_HANDLER, JAVA_HANDLER, PROBE_HANDLER, prepare_probe, probe_dir


def test_every_built_family_has_a_probe_its_handler_names(matrix: Matrix) -> None:
    """The families of the rows built here: interpreted probes are used as they are."""
    found = {rt.family.id: probe_dir(rt) for rt in matrix.runtimes if rt.os.id.startswith("debian")}
    assert sorted(found) == ["go", "java", "nodejs", "provided", "python", "ruby"]
    assert (found["go"] / "go.mod").is_file() and GO_HANDLER == "bootstrap"
    assert (found["java"] / "example" / "Probe.java").is_file()
    assert JAVA_HANDLER == "example.Probe::handleRequest" and PROBE_HANDLER == "probe.handler"
    assert (found["python"] / "probe.py").is_file() and (found["nodejs"] / "probe.js").is_file()
    assert (found["ruby"] / "probe.rb").is_file()
    assert (found["provided"] / "bootstrap").stat().st_mode & 0o100


def test_a_probe_is_copied_readable_with_its_handler(matrix: Matrix, tmp_path: Path) -> None:
    probe = prepare_probe(
        matrix.runtime("python3.11.debian12"), ARCHES["x86_64"], tmp_path / "code",
        lock=Lock(path=tmp_path / "lock.json"), cache=tmp_path / "cache", environ={},
    )  # fmt: skip
    assert probe.handler == PROBE_HANDLER
    assert [(p.name, p.stat().st_mode & 0o777) for p in probe.code.iterdir()] == [
        ("probe.py", 0o644)
    ]


def test_a_family_without_a_probe_is_one_error_naming_the_folder(
    matrix: Matrix, tmp_path: Path
) -> None:
    runtime = next(rt for rt in matrix.runtimes if rt.family.id == "dotnet")
    with pytest.raises(
        InputError, match=r"no probe function in .*templates/dotnet/probe"
    ) as caught:
        prepare_probe(
            runtime, ARCHES["x86_64"], tmp_path / "code", lock=Lock(path=tmp_path / "lock.json"),
            cache=tmp_path / "cache", environ={},
        )  # fmt: skip
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "code").exists()
