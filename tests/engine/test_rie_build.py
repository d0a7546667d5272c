"""The RIE built from its Go module on the host: reproducible, static, for the right
architecture, and refused when the module tree is not the one the lock pins.

Needs the Go toolchain and the Go module proxy (or a module cache that already holds the
module). Each build uses a fresh Go build cache, and is compared with the sha256 the lock
recorded when the binary was built elsewhere: the same bytes from another process, another day
and (usually) another machine.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from pipeline.errors import InputError
from pipeline.gobuild import build_input
from pipeline.lock import Lock
from pipeline.matrix import Input, Matrix
from pipeline.settings import Settings

pytestmark = pytest.mark.slow

ELF_MACHINE = {"x86_64": 62, "arm64": 183}  # EM_X86_64, EM_AARCH64
PT_INTERP = 3


def _rie(matrix: Matrix) -> Input:
    rie: Input = dict(matrix.runtime("provided.debian12").inputs)["emulator"][0]
    assert rie.build is not None
    return rie


def _program_header_types(elf: bytes) -> list[int]:
    phoff = struct.unpack_from("<Q", elf, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    return [struct.unpack_from("<I", elf, phoff + i * phentsize)[0] for i in range(phnum)]


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_the_rie_builds_to_the_bytes_the_lock_recorded(
    matrix: Matrix, tmp_path: Path, arch: str
) -> None:
    rie = _rie(matrix)
    assert rie.build is not None
    lock = Lock.for_matrix(matrix.path)
    module = lock.go_module("provided.debian12", rie.name, rie.build.module, rie.version)
    built = build_input(
        rie,
        arch,
        tmp_path / "aws-lambda-rie",
        module_sum=module.sum,
        what=f"test/{arch}",
        environ=Settings.from_environ().environ,
        gocache=tmp_path / "go-build",
    )
    one = built.path.read_bytes()
    assert built.sha256 == lock.inputs[rie.name][arch] == hashlib.sha256(one).hexdigest()
    assert built.module_sum == module.sum
    assert one[:4] == b"\x7fELF"
    assert struct.unpack_from("<H", one, 18)[0] == ELF_MACHINE[arch]
    assert PT_INTERP not in _program_header_types(one)  # static: no dynamic loader (no cgo)


def test_a_module_tree_other_than_the_locked_one_is_refused(matrix: Matrix, tmp_path: Path) -> None:
    rie = _rie(matrix)
    dest = tmp_path / "aws-lambda-rie"
    with pytest.raises(InputError, match=r"has the go\.sum hash h1:.*but the lock pins .*refusing"):
        build_input(
            rie,
            "x86_64",
            dest,
            module_sum="h1:" + "A" * 43 + "=",
            what="test/x86_64",
            environ=Settings.from_environ().environ,
        )
    assert not dest.exists()
