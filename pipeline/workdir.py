"""The work folder: the only code that knows where a cell's files live and how records are kept.

Layout (``<work>`` is ``--work``, ``out`` by default)::

    <work>/<runtime>/<arch>/           one cell: a runtime built for one architecture
        context/                       the rendered build context (Dockerfile, inputs)
        build.log                      the whole build output
        inputs.json                    the cell's input digest and state       (incremental)
        build.json                     the image built                         (build)
        test.json                      the conformance report                  (conformance)
        snapshot.json                  the layers and config of the snapshot   (snapshot)
        layers/<sha256>.tar.xz         the snapshot's layer tarballs
        sbom.cdx.json                  the snapshot's SBOM (made from the layers, on demand)
    <work>/<runtime>/branch/           the runtime's branch content
    <work>/<runtime>/pushed.json       what the last branch push sent where (a no-op skips git)
    <work>/registry-blobs/             gzipped registry blobs by diff ID, shared by publishes

Records are JSON, written atomically (a temporary file in the same folder, fsync, rename), so a
crash leaves the old record or the new one, never half of one. A record that cannot be read
anyway (an older tool, a disk error, a hand edit) is treated as missing, with one warning line,
and the stage that writes it does its work again. A lock per cell and one per runtime
(``flock``) make two processes working on one cell or runtime take turns; a command that needs
both takes the runtime's first. A lock belongs to the process that took it (a function holding
it may call one that takes it again), and the kernel lets go of it however the process ends, so
whatever is found under a staging name (``.snapshot-*``, ``.branch-*``) while holding the lock
that guards it was left by a killed process and is removed (``remove_stale``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from . import log

T = TypeVar("T")

INPUTS: Final = "inputs.json"
BUILD: Final = "build.json"
TEST: Final = "test.json"
SNAPSHOT: Final = "snapshot.json"
RECORDS: Final = (BUILD, INPUTS, SNAPSHOT, TEST)  # what a cell hands on to another machine
PUSHED: Final = "pushed.json"
LOCK_FILE: Final = ".lock"


class PendingFile:
    """A file being written under a temporary name; ``keep`` makes it visible (see atomic_file)."""

    def __init__(self, folder: Path, prefix: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
        self.path = Path(name)
        self.stream = os.fdopen(fd, "wb")
        self.kept: Path | None = None

    def keep(self, path: Path) -> Path:
        """Flush and fsync the data, then rename it to ``path`` (same folder or file system)
        and fsync the folder: after a crash, ``path`` is the old file or the new one."""
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()
        os.replace(self.path, path)
        self.kept = path
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)
        return path


@contextlib.contextmanager
def atomic_file(folder: Path, prefix: str = ".part-") -> Iterator[PendingFile]:
    """The one way the pipeline writes a file others read: into a temporary file in ``folder``
    that only ``keep(path)`` (temp, fsync, rename) makes visible; without it, or when the block
    raises, the temporary file is removed. Content-addressed writers keep it under the digest
    they computed while writing."""
    pending = PendingFile(folder, prefix)
    try:
        yield pending
    finally:
        pending.stream.close()
        if pending.kept is None:
            pending.path.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` so that readers see the old file or the new one."""
    with atomic_file(path.parent, f".{path.name}.") as pending:
        pending.stream.write(data)
        return pending.keep(path)


def write_json(path: Path, value: Any) -> Path:
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    return write_atomic(path, text.encode("utf-8"))


def unwritable(path: Path, *, is_file: bool) -> str | None:
    """Why ``path`` cannot be written as a file (``is_file``) or as a folder, or None: checked
    before a command's work, so that it is refused instead of failing after the work."""
    if is_file and path.is_dir():
        return "is a folder; expected a file name"
    if not is_file and path.exists() and not path.is_dir():
        return "is a file; expected a folder"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file, not a folder"
            if is_file and parent != (path.parent if str(path.parent) else Path(".")):
                why = f"its folder {path.parent} does not exist"
                return why + "; give the path of a JSON file to write"
            break
    return None


RECORD_MAX_BYTES: Final = 64 << 20  # a record is a few kilobytes; a bigger one is not ours


class TooLarge(ValueError):
    """A file holds more than its reader takes (``read_bounded``)."""

    def __init__(self, path: Path, limit: int) -> None:
        super().__init__(f"{path}: larger than {limit >> 20} MiB")
        self.path, self.limit = path, limit


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, at most ``limit``: TooLarge when there are more. What a person or
    another job hands over may be anything, /dev/zero included; only this much is ever read."""
    with path.open("rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(path, limit)
    return data


class UnreadableRecord(ValueError):
    """A record that exists but cannot be read or parsed; ``reason`` says why, in a few words."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: unreadable record ({reason})")
        self.path = path
        self.reason = reason


def parse_record(path: Path, parse: Callable[[Any], T]) -> T | None:
    """The record at ``path`` made into a value by ``parse``; None when there is none, and
    UnreadableRecord when it is there but malformed."""
    try:
        raw = read_bounded(path, RECORD_MAX_BYTES)
    except FileNotFoundError:
        return None
    except TooLarge:
        raise UnreadableRecord(path, f"larger than {RECORD_MAX_BYTES >> 20} MiB") from None
    try:
        return parse(json.loads(raw.decode("utf-8")))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        if isinstance(exc, UnicodeDecodeError | json.JSONDecodeError | RecursionError):
            reason = "not valid JSON"
        elif isinstance(exc, ValueError):
            reason = str(exc).splitlines()[0][:200]  # what the parser found wrong
        else:
            reason = type(exc).__name__
        raise UnreadableRecord(path, reason) from None


def read_json(path: Path, parse: Callable[[Any], T]) -> T | None:
    """The record at ``path`` made into a value by ``parse``; None when there is none.

    A record that exists but cannot be read or parsed counts as missing: one warning line says
    so, and the caller redoes the work that writes it.
    """
    try:
        return parse_record(path, parse)
    except UnreadableRecord as exc:
        log.warning(f"{exc}, ignored; its stage runs again")
        return None


# Locks this process holds (real path → how many times entered): a lock is the process's, so
# a function that takes it may call another that takes it too (a publish holds its runtime's
# lock and lays out the branch, which takes it again). flock on a second descriptor of the
# same file would wait for the first, forever.
_HELD: dict[str, int] = {}
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def flocked(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created when missing); say so when waiting for it.
    Other processes wait; this process may enter it again while it holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(path)
    with _HELD_GUARD:
        if key in _HELD:
            _HELD[key] += 1
            entered_again = True
        else:
            entered_again = False
    if entered_again:
        try:
            yield
        finally:
            with _HELD_GUARD:
                _HELD[key] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(f"{what} is in use by another lambda-images process; waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        with _HELD_GUARD:
            _HELD[key] = 1
        try:
            yield
        finally:
            with _HELD_GUARD:
                del _HELD[key]
    finally:
        os.close(fd)  # closing releases the lock


def remove_stale(folder: Path, prefix: str) -> None:
    """Remove what a killed process left in ``folder``: entries named ``prefix*`` (its staging
    folders and temporary files). Call it only while holding the lock of whatever writes
    such entries there, so that none of them can be a live one."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name.startswith(prefix):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Cell:
    """One runtime and architecture folder and its records."""

    folder: Path
    runtime: str
    arch: str

    @property
    def name(self) -> str:
        return f"{self.runtime}/{self.arch}"

    @property
    def context(self) -> Path:
        return self.folder / "context"

    @property
    def layers(self) -> Path:
        return self.folder / "layers"

    @property
    def sbom(self) -> Path:
        return self.folder / "sbom.cdx.json"

    @property
    def build_log(self) -> Path:
        return self.folder / "build.log"

    def record(self, name: str) -> Path:
        if name not in RECORDS:
            raise ValueError(f"unknown record {name}")
        return self.folder / name

    def write(self, name: str, value: Any) -> Path:
        return write_json(self.record(name), value)

    def read(self, name: str, parse: Callable[[Any], T]) -> T | None:
        return read_json(self.record(name), parse)

    def read_strict(self, name: str, parse: Callable[[Any], T]) -> T | None:
        """Like ``read``, but an unreadable record raises UnreadableRecord (for a stage that
        cannot redo the one that writes it, and says so in its one error line)."""
        return parse_record(self.record(name), parse)

    def forget(self, name: str) -> None:
        self.record(name).unlink(missing_ok=True)

    def locked(self) -> contextlib.AbstractContextManager[None]:
        return flocked(self.folder / LOCK_FILE, f"cell {self.name}")


@dataclass(frozen=True)
class WorkDir:
    root: Path

    def cell(self, runtime: str, arch: str) -> Cell:
        return Cell(self.root / runtime / arch, runtime, arch)

    def cells(self) -> Iterator[Cell]:
        """Every cell that has an inputs record (CI artifacts are laid out the same way)."""
        for path in sorted(self.root.glob(f"*/*/{INPUTS}")):
            yield self.cell(path.parent.parent.name, path.parent.name)

    def runtime_folder(self, runtime: str) -> Path:
        return self.root / runtime

    def branch(self, runtime: str) -> Path:
        return self.root / runtime / "branch"

    def pushed(self, runtime: str) -> Path:
        """The record of the runtime's last branch push (release.push_runtime_branch)."""
        return self.root / runtime / PUSHED

    def runtime_locked(self, runtime: str) -> contextlib.AbstractContextManager[None]:
        return flocked(self.root / runtime / LOCK_FILE, f"runtime {runtime}")

    @property
    def registry_blobs(self) -> Path:
        return self.root / "registry-blobs"
