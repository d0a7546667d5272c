"""Progress of the steps that move bytes — a download, a Debian base being made, layers being
compressed, a blob being uploaded — in one place, for every stage.

``transfer(title, total)`` gives a ``Meter`` that the step advances as bytes go by. At a terminal
they show as rich's progress display: bytes done and expected, rate and time left, one bar per
transfer under the log lines, gone once the transfer ends (its last line stays). In a log (output
to a file or a pipe, or on GitHub Actions) they are plain lines, never a carriage return: once a
transfer has taken two seconds, a line with how far it is, then at most one per tenth of the
total or per half-minute, and one when it ends, with the bytes, the time and the rate (a
transfer done within two seconds writes nothing: the log of a fast run, or of an error, stays
as it was).

The total may be unknown (``None``; then there is no time left to show) or an estimate: a step
that goes past it grows it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import IO, Any, Final

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from . import log

PLAIN_EVERY: Final = 30.0  # seconds between two plain progress lines at most…
PLAIN_STEP: Final = 10  # …or one line per this many percent of the total, whichever comes first
PLAIN_MIN_GAP: Final = 2.0  # but never two lines closer than this


def on_terminal() -> bool:
    """Whether progress is drawn (a terminal, not GitHub Actions' log)."""
    return (
        log.console.is_terminal
        and not log.console.is_dumb_terminal
        and not (log.on_github_actions())
    )


class _Rate(ProgressColumn):
    """Bytes a second in the units of the rest of the output (KiB, MiB)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        shown = "?" if speed is None else f"{log.human_size(int(speed))}/s"
        return Text(shown, style="progress.data.speed")


class _Display:
    """The one rich Progress shared by every transfer running at a time (rich draws a single
    live display per console); started with the first transfer, stopped with the last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._users = 0

    def add(self, title: str, total: int | None) -> tuple[Progress, TaskID]:
        with self._lock:
            if self._progress is None:
                self._progress = Progress(
                    TextColumn("    {task.description}"),
                    BarColumn(bar_width=20),
                    DownloadColumn(binary_units=True),
                    _Rate(),
                    TextColumn("eta"),
                    TimeRemainingColumn(),
                    console=log.console,
                    transient=True,
                    refresh_per_second=4,
                )
                self._progress.start()
            self._users += 1
            return self._progress, self._progress.add_task(title, total=total)

    def remove(self, task: TaskID) -> None:
        with self._lock:
            assert self._progress is not None
            self._progress.remove_task(task)
            self._users -= 1
            if self._users == 0:
                self._progress.stop()
                self._progress = None


_display = _Display()


def _rate(done: int, seconds: float) -> str:
    return f"{log.human_size(int(done / seconds))}/s" if seconds > 0 else "-"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class Meter:
    """How far one transfer is; thread-safe (layers are compressed side by side)."""

    def __init__(self, title: str, total: int | None) -> None:
        self.title = log.one_line(title)
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._live: tuple[Progress, TaskID] | None = None
        self._said_at = self.started  # plain lines: when the last was written…
        self._said_step = 0  # …and at which tenth of the total
        self._said = False  # …and whether one was
        if on_terminal():
            self._live = _display.add(self.title, total)

    def advance(self, count: int) -> None:
        """``count`` more bytes went by."""
        with self._lock:
            self._set(self.done + count)

    def update(self, done: int) -> None:
        """``done`` bytes have gone by in all (a retry starts again from 0)."""
        with self._lock:
            self._set(done)

    def _set(self, done: int) -> None:
        self.done = done
        if self.total is not None and done > self.total:
            self.total = done  # the estimate was short
        if self._live is not None:
            progress, task = self._live
            progress.update(task, completed=done, total=self.total)
            return
        now = time.monotonic()
        step = done * 100 // (self.total * PLAIN_STEP) if self.total else 0
        if now - self._said_at < PLAIN_MIN_GAP:
            return
        if not self._said or step > self._said_step or now - self._said_at >= PLAIN_EVERY:
            self._said, self._said_at, self._said_step = True, now, step
            log.info(f"    {self.title}: {self._figures(now)}")

    def _figures(self, now: float) -> str:
        elapsed = now - self.started
        done = log.human_size(self.done)
        if not self.total:
            return f"{done}, {_rate(self.done, elapsed)}"
        left = (self.total - self.done) * elapsed / self.done if self.done else None
        eta = f", eta {_clock(left)}" if left is not None else ""
        percent = self.done * 100 // self.total
        figures = f"{done} of {log.human_size(self.total)} ({percent}%)"
        return f"{figures}, {_rate(self.done, elapsed)}{eta}"

    def finish(self, ok: bool) -> None:
        elapsed = time.monotonic() - self.started
        if self._live is not None:
            _display.remove(self._live[1])
        elif not self._said and elapsed < PLAIN_MIN_GAP:
            return
        state = "" if ok else "stopped after "
        figures = f"{log.human_size(self.done)} in {elapsed:.1f}s, {_rate(self.done, elapsed)}"
        log.info(f"    {self.title}: {state}{figures}")

    def reading(self, stream: IO[bytes]) -> CountingReader:
        """``stream``, counted into this meter as it is read (from 0: a retry starts over)."""
        self.update(0)
        return CountingReader(stream, self)


class CountingReader:
    """A binary file that advances a meter by what is read from it: a request body (requests
    and http.client read it in blocks; its length comes from ``fileno``), a `docker load`."""

    def __init__(self, stream: IO[bytes], meter: Meter) -> None:
        self._stream = stream
        self._meter = meter

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._meter.advance(len(data))
        return data

    @property
    def mode(self) -> str:
        return "rb"  # requests checks it of a body it sizes with fstat

    def fileno(self) -> int:
        return self._stream.fileno()

    def tell(self) -> int:
        return self._stream.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> CountingReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@contextlib.contextmanager
def transfer(title: str, total: int | None) -> Iterator[Meter]:
    """A transfer of ``total`` bytes (None: unknown) shown as it goes; its end says how it
    went (bytes, time, rate), whether it finished or was stopped by an error."""
    meter = Meter(title, total)
    ok = False
    try:
        yield meter
        ok = True
    finally:
        meter.finish(ok)
