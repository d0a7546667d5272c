"""Progress output for people at a terminal and for CI logs.

Everything goes to stderr so that stdout stays clean for ``--json`` output. On GitHub Actions
(``GITHUB_ACTIONS=true``) steps become fold groups and errors become ``::error::`` annotations.
External commands are echoed as ``+ cmd …`` before they run.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Iterator, Sequence

from rich.console import Console
from rich.markup import escape


def _console() -> Console:
    probe = Console(stderr=True)
    # Without a terminal rich assumes 80 columns; CI logs are wider than that.
    width = None if probe.is_terminal else max(probe.width, 160)
    # emoji=False: a message naming `file:100:` must not print as `file💯`.
    return Console(stderr=True, highlight=False, emoji=False, soft_wrap=True, width=width)


console = _console()


_github_actions = False


def configure(*, github_actions: bool) -> None:
    """Set once by the CLI from Settings: GitHub Actions gets fold groups and annotations."""
    global _github_actions
    _github_actions = github_actions


def on_github_actions() -> bool:
    return _github_actions


def info(message: str) -> None:
    console.print(escape(message))


def detail(message: str) -> None:
    """A line of streamed output from a tool (build step, git), dimmed."""
    console.print(escape(message), style="dim")


def warning(message: str) -> None:
    if on_github_actions():
        print(f"::warning::{message}", flush=True)
    else:
        console.print(f"[yellow]warning:[/] {escape(message)}")


def error(message: str) -> None:
    if on_github_actions():
        print(f"::error::{message}", flush=True)
    console.print(f"[bold red]error:[/] {escape(message)}")


def command(argv: Sequence[str]) -> None:
    """Echo an external command before running it."""
    console.print(f"[dim]+ {escape(shlex.join(argv))}[/]")


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """A timed step: a header line, then the elapsed time when it ends (or fails)."""
    start = time.monotonic()
    if on_github_actions():
        print(f"::group::{title}", flush=True)
    else:
        console.print(f"[bold cyan]==>[/] [bold]{escape(title)}[/]")
    ok = False
    try:
        yield
        ok = True
    finally:
        elapsed = time.monotonic() - start
        if on_github_actions():
            print("::endgroup::", flush=True)
        mark = "[green]done[/]" if ok else "[red]failed[/]"
        console.print(f"    {mark} {escape(title)} [dim]({elapsed:.1f}s)[/]")


def human_size(num_bytes: int) -> str:
    size = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
