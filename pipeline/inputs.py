"""Inputs: pinned artifacts fetched on the host into a build context.

Python wheels are resolved for the target platform on the host (`pip download --platform …`),
hashed into the lock file by ``lambda-images lock``, and installed into the context with
``--require-hashes`` so a changed artifact is a hard error. RUN steps never need PyPI.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import log
from .errors import InputError
from .lock import Lock, LockedFile
from .matrix import Runtime, Target

PIP_PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}


def _pip_target_args(runtime: Runtime, arch: str) -> list[str]:
    py = runtime.version.replace(".", "")
    return [
        "--only-binary=:all:",
        f"--platform={PIP_PLATFORMS[arch]}",
        f"--python-version={runtime.version}",
        "--implementation=cp",
        f"--abi=cp{py}",
        "--disable-pip-version-check",
        "--no-input",
    ]


def _run_pip(argv: list[str], what: str) -> None:
    full = [sys.executable, "-m", "pip", *argv]
    log.command(full)
    proc = subprocess.run(full, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
        raise InputError(f"{what}: pip failed: {' '.join(lines[-3:]) or proc.returncode}")


def lock_pip(runtime: Runtime, arch: str) -> list[LockedFile]:
    """Resolve and download a runtime's pip requirements for one arch; hash what arrived."""
    with tempfile.TemporaryDirectory(prefix="lambda-images-lock-") as tmp:
        _run_pip(
            [
                "download",
                "--quiet",
                "--dest",
                tmp,
                *_pip_target_args(runtime, arch),
                *runtime.install.pip,
            ],
            f"{runtime.id}/{arch}",
        )
        files = []
        for wheel in sorted(Path(tmp).iterdir()):
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            files.append(LockedFile(filename=wheel.name, sha256=digest))
        return files


def fetch_pip(target: Target, lock: Lock, context: Path) -> Path | None:
    """Install a target's locked wheels into ``context/runtime``; None when it has none."""
    runtime = target.runtime
    dest = context / "runtime"
    if dest.exists():
        shutil.rmtree(dest)
    if not runtime.install.pip:
        return None
    files = lock.pip_files(runtime.id, target.arch.name)
    requirements = context.parent / "requirements.lock.txt"
    requirements.write_text("".join(f.requirement + "\n" for f in files), encoding="utf-8")
    _run_pip(
        [
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--require-hashes",
            f"--target={dest}",
            *_pip_target_args(runtime, target.arch.name),
            "-r",
            str(requirements),
        ],
        target.key,
    )
    # pip leaves a bin/ of console scripts with the host's interpreter path: not wanted.
    shutil.rmtree(dest / "bin", ignore_errors=True)
    return dest
