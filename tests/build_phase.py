"""The build phase: every image the selected engine tests read, made once per run and engine.

Engine test modules say which cells they read with a marker (``pytest.mark.cells("python3.11.
debian12", "provided.debian12/arm64")``: a runtime means all its architectures); the phase makes
the union of what the selected tests declare, through the command line a user runs::

    lambda-images build RT --arch A      (image, conformance checks → build.json, test.json)
    lambda-images snapshot RT --arch A   (layer tarballs → snapshot.json)
    lambda-images branch RT --git-remote (every architecture of RT → its branch, pushed)

into one work folder, one image namespace and one bare git remote, which every test then reads
(records, images, branches) instead of building, checking or snapshotting again.

Two workers share the machine's two cores: one takes the builds for the other architecture (on
an x86_64 machine, arm64: their RUN steps run under qemu), the other those for the host's own,
and either takes snapshots and branches when none of its own builds is ready. Slots are
machine-wide file locks, so two test lanes running side by side (two engines) still run at most
one arm64 build and one x86_64 build at a time.

Each build appends a line to the run's build ledger (pipeline/ledger.py); the phase's own lines
say ``by: build phase``.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.engine import host_arch
from pipeline.matrix import ARCHES, Matrix

PHASE_BY = "build phase"
# A cell a test asks for without the cache (its point is the cold path) is entered as such: a
# cold build that was asked for is not work done twice (tests/ledger_report.py).
NO_CACHE_BY = f"{PHASE_BY} (--no-cache)"
# The machine-wide slots (one per core): a worker holds one while it runs a job.
SLOTS_DIR = Path(tempfile.gettempdir()) / "lambda-images-test-slots"
# Roughly how long a family's arm64 build takes under qemu, longest first: the emulated worker
# starts the longest builds first, so the other worker has snapshots to do meanwhile.
FAMILY_ORDER = ("java", "nodejs", "python", "go", "provided")


@dataclass(frozen=True, order=True)
class CellId:
    runtime: str
    arch: str

    @property
    def key(self) -> str:
        return f"{self.runtime}/{self.arch}"


@dataclass(frozen=True)
class Plan:
    """The cells to make, and those to make without the build cache (a test that proves the
    cold path reads them: its RUN steps must really run)."""

    cells: tuple[CellId, ...]
    no_cache: frozenset[CellId] = frozenset()

    @property
    def runtimes(self) -> list[str]:
        return list(dict.fromkeys(c.runtime for c in self.cells))


def resolve_cells(matrix: Matrix, names: Iterable[str]) -> list[CellId]:
    """``runtime`` (every architecture it declares) or ``runtime/arch`` → cells."""
    cells = []
    for name in names:
        runtime, _, arch = name.partition("/")
        rt = matrix.runtime(runtime)
        arches = [arch] if arch else list(rt.architectures)
        for a in arches:
            if a not in rt.architectures:
                raise ValueError(f"{name}: {runtime} is not built for {a}")
            cells.append(CellId(runtime, a))
    return cells


def make_plan(matrix: Matrix, wanted: Iterable[str], cold: Iterable[str] = ()) -> Plan:
    cells = sorted(set(resolve_cells(matrix, wanted)) | set(resolve_cells(matrix, cold)))
    return Plan(cells=tuple(cells), no_cache=frozenset(resolve_cells(matrix, cold)))


# --- what a run of the phase leaves ---------------------------------------------------------------


@dataclass
class CellOutcome:
    cell: CellId
    built: bool = False
    snapshotted: bool = False
    state: str = ""  # what `build` did: "built", or "skipped" (its image was already there)
    failure: str = ""  # the command that failed and the end of its output
    seconds: dict[str, float] = field(default_factory=dict)  # job → wall time


@dataclass
class PhaseReport:
    """Written to ``<work>/phase.json``: what the phase made, what failed, how long it took."""

    cells: dict[str, CellOutcome]
    branches: dict[str, str]  # runtime → commit pushed to the phase's remote
    branch_failures: dict[str, str]
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "cells": {
                key: {
                    "built": o.built,
                    "state": o.state,
                    "snapshotted": o.snapshotted,
                    "failure": o.failure,
                    "seconds": {k: round(v, 1) for k, v in o.seconds.items()},
                }
                for key, o in sorted(self.cells.items())
            },
            "branches": self.branches,
            "branch_failures": self.branch_failures,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PhaseReport:
        cells = {}
        for key, value in raw["cells"].items():
            runtime, arch = key.split("/")
            cells[key] = CellOutcome(
                CellId(runtime, arch),
                built=value["built"],
                state=value["state"],
                snapshotted=value["snapshotted"],
                failure=value["failure"],
                seconds=value["seconds"],
            )
        return cls(cells, raw["branches"], raw["branch_failures"], raw["seconds"])

    def failures(self) -> list[str]:
        out = [f"{key}: {o.failure}" for key, o in sorted(self.cells.items()) if o.failure]
        return out + [f"branch {rt}: {why}" for rt, why in sorted(self.branch_failures.items())]


# --- running it -----------------------------------------------------------------------------------


@contextmanager
def machine_slot(name: str) -> Iterator[None]:
    """Hold the machine-wide slot ``name`` (a file lock every test lane shares)."""
    SLOTS_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(SLOTS_DIR / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass
class _Job:
    kind: str  # "build", "snapshot", "branch"
    name: str  # a cell key, or a runtime for "branch"
    argv: list[str]
    arch: str = ""  # builds: the architecture, which decides the worker
    by: str = PHASE_BY  # who builds, in the build ledger
    after: list[str] = field(default_factory=list)  # job names that must succeed first
    taken: bool = False  # a worker runs it (or ran it)
    done: bool = False
    ok: bool = False

    @property
    def id(self) -> str:
        return f"{self.kind} {self.name}"


class BuildPhase:
    """Run a plan: ``run()`` returns the report and writes it to ``<work>/phase.json``."""

    def __init__(
        self,
        plan: Plan,
        matrix: Matrix,
        *,
        work: Path,
        remote: str,
        env: Mapping[str, str],
        logs: Path,
    ) -> None:
        self.plan, self.matrix, self.work, self.remote, self.logs = plan, matrix, work, remote, logs
        self.env = {**env, "LAMBDA_IMAGES_BUILD_LEDGER_BY": PHASE_BY}
        self.jobs = self._jobs()
        self.outcomes = {c.key: CellOutcome(c) for c in plan.cells}
        self.branches: dict[str, str] = {}
        self.branch_failures: dict[str, str] = {}
        self._changed = threading.Condition()

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pipeline", "--matrix", str(self.matrix.path),
                "--work", str(self.work), *args]  # fmt: skip

    def _jobs(self) -> list[_Job]:
        rank = {family: n for n, family in enumerate(FAMILY_ORDER)}

        def longest_first(cell: CellId) -> tuple[int, str]:
            return (rank.get(self.matrix.runtime(cell.runtime).family.id, 0), cell.runtime)

        jobs = []
        for cell in sorted(self.plan.cells, key=longest_first):
            fresh = ["--no-cache"] if cell in self.plan.no_cache else []
            # Deprecated rows are built too when a test names them (a user must ask for them).
            build = self._cli("build", cell.runtime, "--arch", cell.arch, "--json",
                              "--include-deprecated", *fresh)  # fmt: skip
            snapshot = self._cli("snapshot", cell.runtime, "--arch", cell.arch,
                                 "--include-deprecated")  # fmt: skip
            by = NO_CACHE_BY if fresh else PHASE_BY
            jobs.append(_Job("build", cell.key, build, arch=cell.arch, by=by))
            jobs.append(_Job("snapshot", cell.key, snapshot, after=[f"build {cell.key}"]))
        for runtime in self.plan.runtimes:
            declared = self.matrix.runtime(runtime).architectures
            planned = [c.arch for c in self.plan.cells if c.runtime == runtime]
            if sorted(planned) != sorted(declared):
                continue  # a branch holds every architecture of its runtime
            branch = self._cli(
                "branch", runtime, "--git-remote", self.remote, "--include-deprecated"
            )
            after = [f"snapshot {runtime}/{arch}" for arch in declared]
            jobs.append(_Job("branch", runtime, branch, after=after))
        return jobs

    def _next(self, emulated: bool) -> _Job | None:
        """The next job for a worker, waiting while others run; None when nothing is left."""
        native = host_arch()
        own_arch = next(a for a in ARCHES if a != native) if emulated else native
        by_id = {j.id: j for j in self.jobs}
        with self._changed:
            while True:
                pending = [j for j in self.jobs if not j.taken]
                if not pending:
                    return None
                ready = []
                for job in pending:
                    before = [by_id[name] for name in job.after]
                    if any(b.done and not b.ok for b in before):
                        job.taken = job.done = True  # what it needs failed: not run
                        self._changed.notify_all()
                    elif all(b.done for b in before):
                        ready.append(job)
                mine = [j for j in ready if j.kind == "build" and j.arch == own_arch]
                others = [j for j in ready if j.kind != "build"]
                if mine or others:
                    chosen = (mine or others)[0]
                    chosen.taken = True
                    return chosen
                self._changed.wait(timeout=5)

    def _worker(self, emulated: bool) -> None:
        slot = "emulated" if emulated else "native"
        while (job := self._next(emulated)) is not None:
            with machine_slot(slot):
                started = time.monotonic()
                log = self.logs / f"{job.kind}-{job.name.replace('/', '-')}.log"
                with log.open("w") as out:
                    env = {**self.env, "LAMBDA_IMAGES_BUILD_LEDGER_BY": job.by}
                    proc = subprocess.run(
                        job.argv, env=env, stdout=subprocess.PIPE, stderr=out, text=True,
                        check=False,
                    )  # fmt: skip
                elapsed = time.monotonic() - started
            self._finish(job, proc, log, elapsed)

    def _finish(
        self, job: _Job, proc: subprocess.CompletedProcess[str], log: Path, elapsed: float
    ) -> None:
        with self._changed:
            job.done, job.ok = True, proc.returncode == 0
            if job.kind == "branch":
                if job.ok:
                    runtime, commit, _state = proc.stdout.strip().splitlines()[-1].split("\t")
                    self.branches[runtime] = commit
                else:
                    self.branch_failures[job.name] = _failure(job, proc, log)
            else:
                outcome = self.outcomes[job.name]
                outcome.seconds[job.kind] = elapsed
                if not job.ok:
                    outcome.failure = _failure(job, proc, log)
                elif job.kind == "build":
                    outcome.built = True
                    (cell,) = json.loads(proc.stdout)
                    outcome.state = str(cell["state"])
                else:
                    outcome.snapshotted = True
            self._changed.notify_all()

    def run(self) -> PhaseReport:
        started = time.monotonic()
        self.logs.mkdir(parents=True, exist_ok=True)
        workers = [threading.Thread(target=self._worker, args=(e,)) for e in (True, False)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        for job in self.jobs:  # jobs skipped because what they needed failed
            if not job.ok and job.kind != "branch" and not self.outcomes[job.name].failure:
                self.outcomes[job.name].failure = f"not run: an earlier stage of {job.name} failed"
            if not job.ok and job.kind == "branch" and job.name not in self.branch_failures:
                self.branch_failures[job.name] = "not pushed: a cell of the runtime failed"
        report = PhaseReport(
            self.outcomes, self.branches, self.branch_failures, time.monotonic() - started
        )
        (self.work / "phase.json").write_text(json.dumps(report.as_json(), indent=2) + "\n")
        return report


def _failure(job: _Job, proc: subprocess.CompletedProcess[str], log: Path) -> str:
    tail = log.read_text(errors="replace").strip().splitlines()[-8:]
    return f"`{job.id}` exited {proc.returncode} (whole output: {log}): " + " | ".join(tail)


def cells_of(marks: Sequence[Any]) -> tuple[list[str], list[str]]:
    """The cell names of ``cells`` markers: (wanted, wanted without the build cache)."""
    wanted: list[str] = []
    cold: list[str] = []
    for mark in marks:
        (cold if mark.kwargs.get("no_cache") else wanted).extend(mark.args)
    return wanted, cold
