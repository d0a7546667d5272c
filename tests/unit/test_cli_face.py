"""The command line's first contact and its output: the help with no arguments, the commands
by section with an example each, shell completion, Docker's and the kernel's architecture names,
a runtime typo named, listings whole in a pipe and one line per row on an 80-column terminal,
and `--json` on every command that produces a result."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import tempfile
import termios
from pathlib import Path

import click
import pytest

from pipeline.cli import cli
from pipeline.matrix import load_matrix
from pipeline.show.help import SECTIONS

REPO = Path(__file__).resolve().parents[2]
# A home of its own (the command caches under it), removed when the tests end.
HOME = tempfile.TemporaryDirectory(prefix="lambda-images-cli-face-")
ENV = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": HOME.name}
RUNTIME_IDS = [rt.id for rt in load_matrix(REPO / "runtimes.yaml").runtimes]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    today = ["--today", "2026-09-01"] if args else []
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *today, *args],
        cwd=REPO, capture_output=True, text=True, check=False, env={**ENV, **(env or {})},
    )  # fmt: skip


def on_a_terminal(*args: str, columns: int) -> str:
    """What `lambda-images ARGS` writes to a pseudo-terminal ``columns`` wide (stdout and
    stderr both go there, as at a prompt), without colour codes."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--today", "2026-09-01", *args],
        cwd=REPO, stdin=follower, stdout=follower, stderr=follower,
        env={**ENV, "COLUMNS": str(columns), "TERM": "xterm"},
    )  # fmt: skip
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other end closed
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(leader)
    assert proc.returncode == 0, out
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode()).replace("\r\n", "\n")


def test_no_arguments_prints_the_commands_by_section_and_exits_0() -> None:
    result = run()
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert out.startswith("Usage: lambda-images [OPTIONS] COMMAND [ARGS]...\n")
    titles = [line[:-1] for line in out.splitlines() if line.endswith(":") and line[0] != " "]
    assert titles == ["Options", *SECTIONS]
    listed = re.findall(r"^  ([a-z]+) ", out, re.MULTILINE)
    assert sorted(listed) == sorted(cli.commands)  # each command once, none left out
    assert "_LAMBDA_IMAGES_COMPLETE=bash_source lambda-images" in out


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_each_command_is_in_one_section_and_its_help_ends_with_an_example(name: str) -> None:
    [section] = [title for title, names in SECTIONS.items() if name in names]
    assert section
    result = run(name, "--help")
    assert result.returncode == 0, result.stderr
    example = result.stdout.rstrip().splitlines()[-1]
    assert example == f"    {SECTIONS[section][name]}"
    assert example.split()[:2] == ["lambda-images", name]


def test_shell_completion_completes_commands() -> None:
    script = run(env={"_LAMBDA_IMAGES_COMPLETE": "bash_source"})
    assert "complete -o nosort -F _lambda_images_completion lambda-images" in script.stdout
    words = {"COMP_WORDS": "lambda-images reb", "COMP_CWORD": "1"}
    completed = run(env={"_LAMBDA_IMAGES_COMPLETE": "bash_complete", **words})
    assert completed.stdout.split() == ["plain,rebuild"]


@pytest.mark.parametrize(("given", "arch"), [("amd64", "x86_64"), ("aarch64", "arm64")])
def test_dockers_and_the_kernels_architecture_names_are_accepted(given: str, arch: str) -> None:
    result = run("matrix", "provided.debian12", "--arch", given, "--json")
    assert result.returncode == 0, result.stderr
    assert [job["arch"] for job in json.loads(result.stdout)["include"]] == [arch]


def test_a_mistyped_runtime_is_named_with_the_one_meant() -> None:
    result = run("render", "--check", "pyhton3.12")
    assert result.returncode == 2
    assert result.stderr == (
        "error: unknown runtime 'pyhton3.12' (not in runtimes.yaml); did you mean 'python3.12'?\n"
    )


def test_list_in_a_pipe_has_every_identifier_whole_on_one_line() -> None:
    result = run("list")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "identifier", "state", "deprecation", "architectures", "OS", "name", "SDK"
    ]  # fmt: skip
    assert [row.split()[0] for row in rows] == RUNTIME_IDS
    python = next(row for row in rows if row.startswith("python3.11.debian12 "))
    rows_json = {r["id"]: r for r in json.loads(run("list", "--json").stdout)}
    assert python.split()[-2:] == rows_json["python3.11.debian12"]["sdk"].split()  # widest, whole
    assert [line for line in result.stdout.splitlines() if line != line.rstrip()] == []


def test_list_on_an_80_column_terminal_has_one_line_per_runtime_and_every_identifier() -> None:
    out = on_a_terminal("list", columns=80)
    lines = out.splitlines()
    assert lines[0] == "(name, SDK left out at 80 columns; --json has all)"
    header, *rows = lines[1:]
    assert header.split() == ["identifier", "state", "deprecation", "architectures", "OS"]
    assert [row.split()[0] for row in rows] == RUNTIME_IDS
    assert max(len(line) for line in lines) <= 80
    nodejs24 = next(row for row in rows if row.startswith("nodejs24.x "))
    assert nodejs24.split()[1:] == ["supported", "2028-04-30", "x86_64", "arm64", "Amazon", "Linux",
                                    "2023"]  # fmt: skip


@pytest.mark.parametrize("name", sorted(set(cli.commands) - {"invoke", "serve", "docs", "render"}))
def test_every_command_with_a_result_has_json(name: str) -> None:
    command = cli.commands[name]
    assert isinstance(command, click.Command)
    assert "--json" in [opt for p in command.params for opt in p.opts]
