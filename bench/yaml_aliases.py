#!/usr/bin/env python3
"""How long a hostile runtimes.yaml made of nested YAML aliases takes to be refused.

Each document is a "billion laughs": a list of 9 scalars, then N lines each listing the line
above 9 times, so N + 1 short lines stand for 9**(N+1) values. For each depth this prints the
seconds ``load_matrix`` took to refuse it, the peak memory of the process (each depth runs in a
process of its own) and the first words of the error; then the same loader with its caps lifted
(as it was before them), up to depth 6: each level is 9 times the one before, in time and memory.

Usage: bench/yaml_aliases.py [--depths 3 4 5 6 8] [--limit SECONDS]
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import pathlib, resource, sys, time
sys.path.insert(0, {repo!r})
import pipeline.matrix as matrix
from pipeline.errors import ConfigurationError
path, mode = pathlib.Path(sys.argv[1]), sys.argv[2]
if mode == "uncapped":  # the loader as it was before the caps
    matrix.MAX_ALIASES = matrix.MAX_NODES = 10**12
start = time.perf_counter()
try:
    matrix.load_matrix(path)
    outcome = "accepted"
except ConfigurationError as exc:
    outcome = str(exc).split(": ", 1)[1][:60]
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(f"{{seconds:.3f}}\\t{{peak}}\\t{{outcome}}")
"""


def bomb(depth: int) -> str:
    names = "abcdefghijklmnopqrstuvwxyz"
    lines = [f"a: &a [{', '.join(['lol'] * 9)}]"]
    for previous, name in itertools.pairwise(names[: depth + 1]):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


def run(path: Path, mode: str, limit: float) -> str:
    code = PROBE.format(repo=str(REPO))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(path), mode],
            capture_output=True,
            text=True,
            timeout=limit,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f">{limit:.0f}\t?\tstill running, stopped"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"?\t?\tfailed: {last[:60]}"
    return proc.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[3, 4, 5, 6, 8])
    parser.add_argument("--limit", type=float, default=60.0, help="seconds per run")
    args = parser.parse_args()
    print("depth\tlines\taliases\tloader\tseconds\tpeak_MB\toutcome")
    with tempfile.TemporaryDirectory(prefix="yaml-aliases-") as tmp:
        for depth in args.depths:
            path = Path(tmp) / f"bomb{depth}.yaml"
            path.write_text(bomb(depth))
            for mode in ("capped", "uncapped"):
                if mode == "uncapped" and depth > 6:
                    print(f"{depth}\t{depth + 1}\t{9 * depth}\t{mode}\tskipped (9**{depth + 1})")
                    continue
                result = run(path, mode, args.limit)
                print(f"{depth}\t{depth + 1}\t{9 * depth}\t{mode}\t{result}", flush=True)


if __name__ == "__main__":
    main()
