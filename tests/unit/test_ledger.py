"""The build ledger (pipeline/ledger.py): which RUN steps of a build ran and which came from the
cache, read off the classic builder's and BuildKit's logs; lines appended by several processes;
the rule the test runs keep (tests/ledger_report.py): no cell built cold twice from the same
inputs."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from ledger_report import built_cold_twice, ledger_table

from pipeline import ledger

CLASSIC = """\
Step 1/5 : FROM lambda-images/base-debian12:x86_64
 ---> a27a64d468e1
Step 2/5 : RUN set -eux; apt-get update
 ---> Using cache
 ---> 4d830b4d30e5
Step 3/5 : COPY inputs/ /tmp/inputs/
 ---> Using cache
 ---> 241fceece794
Step 4/5 : RUN echo "Step 9/9 : RUN not a step" && make
 ---> Running in 37f0407debd6
Step 9/9 : RUN not a step
Removing intermediate container 37f0407debd6
 ---> 6e0d18893014
Step 5/5 : LABEL x=y
 ---> Running in 67ac78a0ca47
 ---> e6aaaff69312
"""

BUILDKIT = """\
#1 [internal] load build definition from Dockerfile
#1 DONE 0.0s
#4 [inputs 2/4] RUN set -eux; mkdir -p /var/task
#4 CACHED
#5 [stage-1 3/6] COPY lambda-entrypoint.sh /lambda-entrypoint.sh
#5 DONE 0.1s
#6 [stage-1 2/6] RUN apt-get update
#6 0.512 Get:1 http://deb.debian.org/debian bookworm InRelease
#6 DONE 12.3s
#7 [stage-1 4/6] RUN true
#7 CACHED
"""


def test_the_classic_builders_run_steps_are_counted_as_ran_or_cached() -> None:
    # Step 4's output holds a line that looks like a step: it is output, not a step.
    assert ledger.count_run_steps(CLASSIC.splitlines()) == ledger.StepCount(ran=1, cached=1)


def test_buildkits_run_steps_are_counted_as_ran_or_cached() -> None:
    assert ledger.count_run_steps(BUILDKIT.splitlines()) == ledger.StepCount(ran=1, cached=2)


def test_a_build_whose_run_steps_all_came_from_the_cache_is_not_cold() -> None:
    lines = [line for line in CLASSIC.splitlines() if "Step 4/5" not in line]
    assert not ledger.count_run_steps(lines[:9]).cold
    assert ledger.count_run_steps(CLASSIC.splitlines()).cold


def entry(
    runtime: str, *, cold: bool, digest: str = "sha256:" + "1" * 64, by: str = "x"
) -> ledger.LedgerEntry:
    return ledger.LedgerEntry(
        runtime=runtime, arch="arm64", engine="unix:///var/run/docker.sock 20.10.24",
        builder="classic", image=f"lambda-images/{runtime}:arm64", image_id="sha256:" + "2" * 64,
        input_digest=digest, cold=cold, run_steps_ran=int(cold), run_steps_cached=1,
        seconds=12.0, by=by,
    )  # fmt: skip


def _append(path: Path, n: int) -> None:
    for i in range(50):
        ledger.append(path, entry(f"rt{n}-{i}", cold=True))


def test_lines_of_processes_that_build_at_once_do_not_interleave(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    processes = [multiprocessing.Process(target=_append, args=(path, n)) for n in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    read = list(ledger.read(path))
    assert sorted(e.runtime for e in read) == sorted(
        f"rt{n}-{i}" for n in range(4) for i in range(50)
    )


def test_a_cell_built_cold_twice_from_the_same_inputs_is_named_with_who_built_it() -> None:
    entries = [
        entry("provided.debian12", cold=True, by="build phase"),
        entry("provided.debian12", cold=False, by="a cached rebuild"),
        entry("provided.debian12", cold=True, digest="sha256:" + "9" * 64, by="new base"),
        entry("provided.debian12", cold=True, by="tests/x.py::test_again"),
    ]
    assert built_cold_twice(entries) == {
        "provided.debian12/arm64 on unix:///var/run/docker.sock 20.10.24 (inputs 111111111111)": [
            "build phase",
            "tests/x.py::test_again",
        ]
    }
    assert built_cold_twice(entries[:3]) == {}
    # A cold build a test asked for (the phase's --no-cache cell) is not work done twice.
    asked = entry("provided.debian12", cold=True, by="build phase (--no-cache)")
    assert built_cold_twice([*entries[:3], asked]) == {}
    assert ledger_table(entries[:1]) == [
        "cell                     engine    builder  build  RUN steps        seconds  by",
        "provided.debian12/arm64  20.10.24  classic  cold   1 ran, 1 cached  12       build phase",
    ]
