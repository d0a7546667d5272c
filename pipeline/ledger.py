"""The build ledger: one JSON line per image build, appended to a file that several processes share.

When ``LAMBDA_IMAGES_BUILD_LEDGER`` names a file, every image build (``build``, ``rebuild``,
``refresh``, whatever command ran it) appends what it built: the cell, the engine, whether any RUN
step really ran (``cold``) or every one came from the build cache, how long it took, and who
asked (``LAMBDA_IMAGES_BUILD_LEDGER_BY``, e.g. a CI job's name). A run whose jobs share one ledger
can then tell which image was built twice. A build whose inputs were unchanged is skipped
before it reaches the engine and is not a build.

Lines are written with one ``write`` on a file opened for appending, so lines of processes that
build at once do not interleave.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

# The classic builder announces each instruction, then either reuses it or runs it:
#   Step 5/12 : RUN set -eux; …
#    ---> Using cache            |    ---> Running in 3f2a…
_CLASSIC_STEP: Final = re.compile(r"Step \d+/\d+ : (\S+)")
_CLASSIC_CACHED: Final = re.compile(r"^\s*---> Using cache\s*$")
_CLASSIC_RAN: Final = re.compile(r"^\s*---> Running in ")
# BuildKit's plain progress (pipeline/buildkit.py writes it as `docker build --progress=plain`):
#   #7 [stage-1 3/6] RUN set -eux; …        then   #7 CACHED   or   #7 DONE 12.3s
_BUILDKIT_VERTEX: Final = re.compile(r"^#(\d+) \[[^\]]*\] (\S+)")
_BUILDKIT_END: Final = re.compile(r"^#(\d+) (CACHED|DONE\b)")


@dataclass(frozen=True)
class StepCount:
    """How many RUN instructions of a build ran, and how many came from the build cache."""

    ran: int = 0
    cached: int = 0

    @property
    def cold(self) -> bool:
        """A RUN step ran: the build did real work (not only metadata, not only the cache)."""
        return self.ran > 0


def count_run_steps(lines: Iterable[str]) -> StepCount:
    """Count the RUN steps of a build log (classic builder or BuildKit plain progress) that ran
    and that were taken from the cache."""
    ran = cached = 0
    classic_run = False  # the classic builder's current instruction is a RUN
    buildkit_runs: set[str] = set()  # BuildKit vertices that are RUN instructions
    for line in lines:
        if step := _CLASSIC_STEP.search(line):
            classic_run = step.group(1).upper() == "RUN"
        elif classic_run and _CLASSIC_CACHED.match(line):
            cached, classic_run = cached + 1, False
        elif classic_run and _CLASSIC_RAN.match(line):
            ran, classic_run = ran + 1, False
        elif vertex := _BUILDKIT_VERTEX.match(line):
            if vertex.group(2).upper() == "RUN":
                buildkit_runs.add(vertex.group(1))
        elif (end := _BUILDKIT_END.match(line)) and end.group(1) in buildkit_runs:
            buildkit_runs.discard(end.group(1))
            if end.group(2) == "CACHED":
                cached += 1
            else:
                ran += 1
    return StepCount(ran=ran, cached=cached)


@dataclass(frozen=True, kw_only=True)
class LedgerEntry:
    runtime: str
    arch: str
    engine: str  # where the engine is and its version, e.g. "unix:///var/run/docker.sock 20.10.24"
    builder: str  # "classic" or "buildkit"
    image: str
    image_id: str
    input_digest: str
    cold: bool
    run_steps_ran: int
    run_steps_cached: int
    seconds: float
    by: str  # LAMBDA_IMAGES_BUILD_LEDGER_BY, or the command line

    @property
    def cell(self) -> tuple[str, str, str]:
        """(row, arch, engine): what "the same cell" means across the processes of one run."""
        return (self.runtime, self.arch, self.engine)


def append(path: Path, entry: LedgerEntry) -> None:
    """Add ``entry`` as one line to the ledger at ``path`` (created when missing)."""
    line = json.dumps(asdict(entry), sort_keys=True) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read(path: Path) -> Iterator[LedgerEntry]:
    """The entries of a ledger, in the order they were written (none when there is no file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        if line.strip():
            yield LedgerEntry(**json.loads(line))
