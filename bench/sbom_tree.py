#!/usr/bin/env python3
"""How long the SBOM of a synthetic image with many files takes: the merged file tree of its
layers (oci/tree.py), whiteouts and folders replaced by files included.

Each image has three xz layers, written to a temporary folder first (not timed):

1. ``FILES`` small files, ten per folder, beside a dpkg status file and an npm package;
2. a whiteout for every second file of the first layer, an opaque marker in every tenth
   folder, and every twentieth folder replaced by a file (as ``apt-get purge``, a ``rm -rf``
   and a ``mv`` in a Dockerfile leave them);
3. a tenth of the deleted files written again.

Then ``make_sbom`` reads the three layers and writes the document; the time printed is that
call's. Before the tree was made linear, 5,000 / 10,000 / 20,000 files took 1.6 / 6.7 / 25.2 s.

Usage: bench/sbom_tree.py [--files 5000 10000 20000 50000]
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.sbom import make_sbom

DPKG_STATUS = b"Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2-1\n"


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    if data is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        return
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _layer(path: Path, fill: object) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        fill(tar)  # type: ignore[operator]
    path.write_bytes(lzma.compress(raw.getvalue(), preset=0))
    return path


def image(folder: Path, files: int) -> list[Path]:
    folders = max(1, files // 10)

    def name(i: int) -> str:
        return f"srv/data/d{i % folders:06d}/f{i:07d}"

    def first(tar: tarfile.TarFile) -> None:
        for d in ("var", "var/lib", "var/lib/dpkg", "srv", "srv/data"):
            _add(tar, d)
        _add(tar, "var/lib/dpkg/status", DPKG_STATUS)
        package = {"name": "left-pad", "version": "1.3.0", "license": "WTFPL"}
        _add(tar, "srv/node_modules/left-pad/package.json", json.dumps(package).encode())
        for d in range(folders):
            _add(tar, f"srv/data/d{d:06d}")
        for i in range(files):
            _add(tar, name(i), b"x")

    def second(tar: tarfile.TarFile) -> None:
        for i in range(0, files, 2):
            folder, _, base = name(i).rpartition("/")
            _add(tar, f"{folder}/.wh.{base}", b"")
        for d in range(0, folders, 10):
            _add(tar, f"srv/data/d{d:06d}/.wh..wh..opq", b"")
        for d in range(5, folders, 20):
            _add(tar, f"srv/data/d{d:06d}", b"a file now")

    def third(tar: tarfile.TarFile) -> None:
        for i in range(0, files, 20):
            if (i % folders) % 20 != 5:
                _add(tar, name(i), b"again")

    return [
        _layer(folder / "0.tar.xz", first),
        _layer(folder / "1.tar.xz", second),
        _layer(folder / "2.tar.xz", third),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[5000, 10000, 20000, 50000])
    args = parser.parse_args()
    for files in args.files:
        with tempfile.TemporaryDirectory(prefix="sbom-tree-") as tmp:
            layers = image(Path(tmp), files)
            start = time.perf_counter()
            document = make_sbom("bench", "x86_64", layers, ["sha256:" + "0" * 64] * 3, 0)
            seconds = time.perf_counter() - start
        components = len(json.loads(document)["components"])
        print(f"files={files}\tseconds={seconds:.2f}\tcomponents={components}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
