"""Probes compiled on the host: the Go probe is a static executable for the target architecture,
the same bytes from two builds in two processes; the Java probe is Java 17 bytecode; a missing
compiler is one clear error. Marked slow: they run the real toolchains on the host and fetch
modules (Go module proxy) and the pinned aws-lambda-java-core jar (Maven Central) when they are
not cached; no engine is needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import InputError
from pipeline.lock import Lock
from pipeline.matrix import ARCHES, Matrix
from pipeline.probes import GO_HANDLER, JAVA_HANDLER, PROBE_HANDLER, prepare_probe
from pipeline.settings import Settings

pytestmark = pytest.mark.slow

ELF_MACHINE = {"x86_64": 62, "arm64": 183}
PT_INTERP = 3


def elf_facts(path: Path) -> tuple[int, bool]:
    """(e_machine, whether a program header asks for a dynamic loader) of a 64-bit ELF file."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2  # ELF, 64-bit
    machine = int.from_bytes(data[18:20], "little")
    phoff = int.from_bytes(data[0x20:0x28], "little")
    phentsize = int.from_bytes(data[0x36:0x38], "little")
    phnum = int.from_bytes(data[0x38:0x3A], "little")
    types = [
        int.from_bytes(data[phoff + i * phentsize : phoff + i * phentsize + 4], "little")
        for i in range(phnum)
    ]
    return machine, PT_INTERP in types


def build_in_subprocess(runtime_id: str, arch: str, dest: Path) -> None:
    """prepare_probe in a fresh interpreter, so that nothing is shared with this process."""
    script = (
        "import sys; from pathlib import Path;"
        "from pipeline.matrix import load_matrix, ARCHES; from pipeline.lock import Lock;"
        "from pipeline.probes import prepare_probe; from pipeline.settings import Settings;"
        "m = load_matrix(Path(sys.argv[1]));"
        "prepare_probe(m.runtime(sys.argv[2]), ARCHES[sys.argv[3]], Path(sys.argv[4]),"
        " lock=Lock.for_matrix(m.path), cache=Settings.from_environ().cache / 'inputs',"
        " environ=Settings.from_environ().environ)"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-c", script, str(root / "runtimes.yaml"), runtime_id, arch, str(dest)],
        check=True,
        cwd=dest.parent,
    )


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_go_probe_is_a_static_reproducible_executable_for_its_arch(
    tmp_path: Path, arch: str
) -> None:
    one, two = tmp_path / "one" / "code", tmp_path / "two" / "elsewhere"
    for dest in (one, two):
        dest.parent.mkdir()
        build_in_subprocess("go.debian12", arch, dest)
    assert sorted(p.name for p in one.iterdir()) == [GO_HANDLER]
    binary = one / GO_HANDLER
    assert binary.stat().st_mode & 0o777 == 0o755
    assert elf_facts(binary) == (ELF_MACHINE[arch], False)  # no dynamic loader: static
    assert binary.read_bytes() == (two / GO_HANDLER).read_bytes()
    assert str(tmp_path).encode() not in binary.read_bytes()  # -trimpath


def test_java_probe_is_java_17_bytecode_readable_by_lambdas_user(
    matrix: Matrix, tmp_path: Path
) -> None:
    probe = prepare_probe(
        matrix.runtime("java21.debian13"),
        ARCHES["arm64"],
        tmp_path / "code",
        lock=Lock.for_matrix(matrix.path),
        cache=Settings.from_environ().cache / "inputs",
        environ=Settings.from_environ().environ,
    )
    assert probe.handler == JAVA_HANDLER
    classes = sorted(p.relative_to(probe.code).as_posix() for p in probe.code.rglob("*.class"))
    assert classes == ["example/Probe.class", "example/ProbeFailure.class"]
    for name in classes:
        data = (probe.code / name).read_bytes()
        assert data[:4] == b"\xca\xfe\xba\xbe"
        assert int.from_bytes(data[6:8], "big") == 61  # class file version of Java 17
        assert (probe.code / name).stat().st_mode & 0o777 == 0o644
    assert (probe.code / "example").stat().st_mode & 0o777 == 0o755
    assert not list(tmp_path.glob(".*"))  # the scratch folder for javac is gone


def test_interpreted_probe_is_copied_with_its_handler(matrix: Matrix, tmp_path: Path) -> None:
    probe = prepare_probe(
        matrix.runtime("python3.11.debian12"),
        ARCHES["x86_64"],
        tmp_path / "code",
        lock=Lock.for_matrix(matrix.path),
        cache=tmp_path / "cache",
        environ=Settings.from_environ().environ,
    )
    assert probe.handler == PROBE_HANDLER
    assert [p.name for p in probe.code.iterdir()] == ["probe.py"]


def test_missing_compiler_is_one_input_error(
    matrix: Matrix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(InputError, match=r"`go` is not installed on this machine") as caught:
        prepare_probe(
            matrix.runtime("go.debian12"),
            ARCHES["arm64"],
            tmp_path / "code",
            lock=Lock.for_matrix(matrix.path),
            cache=tmp_path / "cache",
            environ=Settings.from_environ().environ,
        )
    assert "\n" not in str(caught.value)
