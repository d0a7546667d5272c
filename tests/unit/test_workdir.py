"""The work folder's records: atomic writes, unreadable records redone, cells locked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.workdir import BUILD, INPUTS, RECORDS, SNAPSHOT, TEST, WorkDir

# A writer that stops for good after the record's bytes are written and before the rename.
SLOW_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from pipeline.workdir import WorkDir

    def stall(fd):
        print("written", flush=True)
        time.sleep(60)

    os.fsync = stall
    cell = WorkDir(Path(sys.argv[1])).cell("rt", "x86_64")
    cell.write(sys.argv[2], {"generation": 2, "padding": "x" * 100000})
    """
)


@pytest.mark.parametrize("name", RECORDS)
def test_a_writer_killed_mid_write_leaves_the_previous_record(tmp_path: Path, name: str) -> None:
    cell = WorkDir(tmp_path).cell("rt", "x86_64")
    cell.write(name, {"generation": 1})
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(tmp_path), name],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "written"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert cell.read(name, lambda data: data) == {"generation": 1}


@pytest.mark.parametrize("name", [BUILD, INPUTS, TEST, SNAPSHOT])
def test_an_unreadable_record_counts_as_missing_with_one_warning(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cell = WorkDir(tmp_path).cell("rt", "arm64")
    cell.folder.mkdir(parents=True)
    cell.record(name).write_text('{"runtime": "rt", "ar')  # what an in-place write left once
    assert cell.read(name, lambda data: data) is None
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1
    assert f"{cell.record(name)}: unreadable record" in warning[0]
    assert "runs again" in warning[0]


def test_a_record_of_the_wrong_shape_counts_as_missing(tmp_path: Path) -> None:
    from pipeline.records import BuildRecord

    cell = WorkDir(tmp_path).cell("rt", "x86_64")
    cell.write(BUILD, {"runtime": "rt"})  # valid JSON, missing fields
    assert BuildRecord.read(cell) is None


def test_a_missing_record_is_none_without_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert WorkDir(tmp_path).cell("rt", "x86_64").read(TEST, lambda data: data) is None
    assert capsys.readouterr().err == ""


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pipeline.workdir import WorkDir

    with WorkDir(Path(sys.argv[1])).cell("rt", "x86_64").locked():
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def test_a_second_process_waits_for_the_cells_lock_and_says_so(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), "1.5"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "holding"
    started = time.monotonic()
    waiter = subprocess.run(
        [sys.executable, "-c", HOLDER, str(tmp_path), "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    holder.wait()
    assert time.monotonic() - started > 0.5  # it got the lock only when the holder let go
    assert "cell rt/x86_64 is in use by another lambda-images process; waiting" in waiter.stderr


def test_a_lock_held_by_a_killed_process_is_free_again(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), "60"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "holding"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    waiter = subprocess.run(
        [sys.executable, "-c", HOLDER, str(tmp_path), "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "waiting" not in waiter.stderr


def test_only_so_much_of_a_file_is_ever_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/dev/zero never ends; a record far larger than any record is not one."""
    from pipeline import workdir

    with pytest.raises(workdir.TooLarge, match="/dev/zero: larger than 1 MiB"):
        workdir.read_bounded(Path("/dev/zero"), 1 << 20)
    assert workdir.read_bounded(Path("/dev/null"), 1) == b""
    monkeypatch.setattr(workdir, "RECORD_MAX_BYTES", 1 << 20)
    cell = WorkDir(tmp_path).cell("rt", "x86_64")
    cell.folder.mkdir(parents=True)
    cell.record(BUILD).write_bytes(b" " * ((1 << 20) + 1))
    with pytest.raises(workdir.UnreadableRecord, match=r"unreadable record \(larger than 1 MiB\)"):
        cell.read_strict(BUILD, lambda raw: raw)


def test_a_lock_is_the_processs_so_a_function_holding_it_may_call_one_that_takes_it(
    tmp_path: Path,
) -> None:
    cell = WorkDir(tmp_path).cell("rt", "x86_64")
    with cell.locked(), cell.locked():  # would wait for itself forever if not
        pass
    holder = subprocess.Popen(
        [sys.executable, "-c", NESTED_HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "inner released"  # the outer still holds it
    waiter = subprocess.run(
        [sys.executable, "-c", HOLDER, str(tmp_path), "0"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    holder.wait()
    assert "waiting" in waiter.stderr


NESTED_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pipeline.workdir import WorkDir

    cell = WorkDir(Path(sys.argv[1])).cell("rt", "x86_64")
    with cell.locked():
        with cell.locked():
            pass
        print("inner released", flush=True)
        time.sleep(1.5)
    """
)
