"""Progress output for people at a terminal and for CI logs.

Everything goes to stderr so that stdout stays clean for ``--json`` output. On GitHub Actions
(``GITHUB_ACTIONS=true``) steps become fold groups and errors become ``::error::`` annotations.
External commands are echoed as ``+ cmd …`` before they run.

A message is one line of text whatever it quotes (a registry's error, a tool's output, a file
name): line breaks, terminal escape sequences and invisible reordering characters are shown as
escapes (``\\n``, ``\\x1b``, ``\\u202e``), never written, and on GitHub Actions no line can start
a workflow command (``::add-mask::``, ``::error::``) other than the ones this module writes.
"""

from __future__ import annotations

import contextlib
import re
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

# C0 and C1 controls but the tab (line breaks, ESC, BEL…), DEL, the Unicode line separators,
# and the invisible characters that reorder or hide text on screen (bidi controls, zero-width,
# BOM).
_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)


def one_line(text: str) -> str:
    """``text`` as one line of plain text: every character of ``_UNPRINTABLE`` shown as its
    Python escape (a newline as ``\\n``, ESC as ``\\x1b``), so that quoted text can neither add
    a line nor drive the terminal."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _line(text: str) -> str:
    """One line that a CI log cannot take for a workflow command: GitHub Actions reads any line
    that starts with ``::`` (after spaces) as one."""
    text = one_line(text)
    return "\\" + text if text.lstrip().startswith("::") else text


def _command_data(text: str) -> str:
    """A workflow command's message: one line, ``%`` escaped as GitHub's toolkit escapes it (so
    that ``%0A`` in the text stays text)."""
    return one_line(text).replace("%", "%25")


_github_actions = False


def configure(*, github_actions: bool) -> None:
    """Set once by the CLI from Settings: GitHub Actions gets fold groups and annotations."""
    global _github_actions
    _github_actions = github_actions


def on_github_actions() -> bool:
    return _github_actions


def info(message: str) -> None:
    console.print(escape(_line(message)))


def detail(message: str) -> None:
    """A line of streamed output from a tool (build step, git), dimmed."""
    console.print(escape(_line(message)), style="dim")


def warning(message: str) -> None:
    if on_github_actions():
        print(f"::warning::{_command_data(message)}", flush=True)
    else:
        console.print(f"[yellow]warning:[/] {escape(one_line(message))}")


def error(message: str) -> None:
    if on_github_actions():
        print(f"::error::{_command_data(message)}", flush=True)
    console.print(f"[bold red]error:[/] {escape(one_line(message))}")


def command(argv: Sequence[str]) -> None:
    """Echo an external command before running it."""
    console.print(f"[dim]+ {escape(one_line(shlex.join(argv)))}[/]")


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """A timed step: a header line, then the elapsed time when it ends (or fails)."""
    start = time.monotonic()
    if on_github_actions():
        print(f"::group::{_command_data(title)}", flush=True)
    else:
        console.print(f"[bold cyan]==>[/] [bold]{escape(one_line(title))}[/]")
    ok = False
    try:
        yield
        ok = True
    finally:
        elapsed = time.monotonic() - start
        if on_github_actions():
            print("::endgroup::", flush=True)
        mark = "[green]done[/]" if ok else "[red]failed[/]"
        console.print(f"    {mark} {escape(one_line(title))} [dim]({elapsed:.1f}s)[/]")


def human_size(num_bytes: int) -> str:
    size = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
