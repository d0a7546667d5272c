"""The one way tests run the command line: `lambda-images ARGS` in a process of its own, as a user
runs it (the virtualenv's interpreter, so an installed checkout and a fresh clone behave alike)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

LAMBDA_IMAGES = [sys.executable, "-m", "pipeline"]
# The installed console script, for a test that looks for the command in the process list.
SCRIPT = str(Path(sys.executable).with_name("lambda-images"))


def isolated_env(**extra: str) -> dict[str, str]:
    """An environment with nothing of the caller's but a system PATH, no colour, wide lines:
    what a test needs to see the command's own defaults (no LAMBDA_IMAGES_* from the shell)."""
    return {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "1000", **extra}


def command(*args: str) -> list[str]:
    """The argv of `lambda-images ARGS` (for tests that start it with Popen: signals, races)."""
    return [*LAMBDA_IMAGES, *args]


def lambda_images(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = False,
    timeout: float = 1800,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `lambda-images ARGS`; ``env`` replaces the environment (default: this process's).
    ``check``: fail the test, with the end of stderr, unless it exits 0."""
    proc = subprocess.run(
        command(*args),
        env=dict(os.environ if env is None else env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        check=False,
    )
    if check:
        assert proc.returncode == 0, (
            f"lambda-images {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        )
    return proc
