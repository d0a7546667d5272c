#!/usr/bin/env python3
"""How long making an SBOM takes, and how big it is, for every snapshot in a work folder.

Prints one line per cell: runtime/arch, layers, uncompressed MB read, components by ecosystem,
seconds to make it from the layers, SBOM bytes, and whether a second run gave the same bytes.

Usage: bench/sbom.py WORK
"""

from __future__ import annotations

import collections
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.sbom import make_sbom
from pipeline.snapshot import ArchSnapshot
from pipeline.workdir import WorkDir


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    work = WorkDir(Path(sys.argv[1]))
    for path in sorted(work.root.glob("*/*/snapshot.json")):
        cell = work.cell(path.parent.parent.name, path.parent.name)
        snap = ArchSnapshot.read(cell)
        if snap is None:
            continue
        layers = [cell.layers / layer.file for layer in snap.layers]
        diff_ids = [layer.diff_id for layer in snap.layers]
        start = time.perf_counter()
        one = make_sbom(snap.runtime, snap.arch, layers, diff_ids, 0)
        seconds = time.perf_counter() - start
        two = make_sbom(snap.runtime, snap.arch, layers, diff_ids, 0)
        kinds = collections.Counter(
            c["purl"].partition("/")[0].removeprefix("pkg:")
            for c in json.loads(one)["components"]
            if "purl" in c
        )
        mb = sum(layer.size for layer in snap.layers) / 1e6
        print(
            f"{cell.name}\tlayers={len(layers)}\tread_mb={mb:.1f}\tcomponents={dict(kinds)}\t"
            f"seconds={seconds:.1f}\tsbom_bytes={len(one)}\tsame_bytes_again={one == two}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
