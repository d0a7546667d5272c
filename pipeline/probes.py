"""Probes: the function a family's conformance check invokes, made ready to mount at /var/task.

Each family keeps its probe's source in ``templates/<family>/probe/``. Interpreted families
(Python, Node.js, a shell bootstrap) use it as it is. Compiled ones are compiled on the host,
never in the image or under qemu:

- **java**: ``javac --release 17`` against the ``aws-lambda-java-core`` jar the runtime pins
  (the same bytes the image carries); the handler is ``example.Probe::handleRequest``;
- **go** (a ``go.mod`` beside the source): ``go build`` for the target's architecture under
  the Go rules of gotool.py (the Go release the matrix pins for the RIE, no cgo, ``-trimpath``,
  modules checked against the probe's ``go.sum``) and an empty build id; the result is the
  executable ``bootstrap``. The same source and toolchain give the same bytes.

Compilers are looked up on the ``PATH`` of ``environ`` (Settings.environ), which their commands
run with; a missing one is one InputError naming it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from . import gotool, log
from .errors import InputError
from .inputs import download
from .lock import Lock
from .matrix import TEMPLATES_DIR, Arch, Runtime

PROBE_HANDLER: Final = "probe.handler"
JAVA_HANDLER: Final = "example.Probe::handleRequest"
GO_HANDLER: Final = "bootstrap"
JAVA_RELEASE: Final = "17"
JAVA_CORE: Final = "aws-lambda-java-core"


@dataclass(frozen=True, kw_only=True)
class Probe:
    """A probe ready to run: the directory mounted as the task root, and its handler."""

    code: Path
    handler: str


def probe_dir(runtime: Runtime) -> Path:
    """The family's probe source: a function that returns the event it is given."""
    return TEMPLATES_DIR / runtime.family.template / "probe"


def prepare_probe(
    runtime: Runtime,
    arch: Arch,
    dest: Path,
    *,
    lock: Lock,
    cache: Path,
    environ: Mapping[str, str],
) -> Probe:
    """Copy or compile the runtime's probe into the empty folder ``dest`` (world-readable, as
    Lambda's user needs it); compilers run with ``environ`` (Settings.environ)."""
    source = probe_dir(runtime)
    if not source.is_dir():
        msg = f"{runtime.id}: no probe function in {source}; every family needs one there"
        raise InputError(msg + " (docs/matrix.md, Adding a family)")
    dest.mkdir(parents=True, exist_ok=True)
    if (source / "go.mod").is_file():
        probe = _go(runtime, source, arch, dest, environ)
    elif any(source.rglob("*.java")):
        probe = _java(runtime, source, dest, lock=lock, cache=cache, environ=environ)
    else:
        copy_readable(source, dest)
        probe = Probe(code=dest, handler=PROBE_HANDLER)
    copy_readable(dest, dest)
    return probe


def copy_readable(source: Path, dest: Path) -> Path:
    """``source`` copied to ``dest`` (or, when they are the same, fixed in place) with every file
    and folder readable by Lambda's user whatever the checkout's umask was."""
    if source != dest:
        shutil.copytree(source, dest, dirs_exist_ok=True)
    dest.chmod(0o755)
    for path in dest.rglob("*"):
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if path.stat().st_mode & 0o100 else 0o644)
    return dest


def _javac(argv: list[str], what: str, *, cwd: Path, environ: Mapping[str, str]) -> None:
    javac = shutil.which("javac", path=environ.get("PATH", ""))
    if javac is None:
        raise InputError(
            f"{what}: `javac` is not installed on this machine; the probe is "
            "compiled on the host (see the README's Development section)"
        )
    log.command(["javac", *argv])
    proc = subprocess.run(
        [javac, *argv], cwd=cwd, env=dict(environ), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = " | ".join(line for line in proc.stderr.strip().splitlines()[-4:] if line.strip())
        raise InputError(f"{what}: javac failed (exit {proc.returncode}): {tail}")


def _java(
    runtime: Runtime,
    source: Path,
    dest: Path,
    *,
    lock: Lock,
    cache: Path,
    environ: Mapping[str, str],
) -> Probe:
    what = f"{runtime.id}: the Java probe"
    arch = runtime.architectures[0]
    jars = [i for i in runtime.all_inputs() if i.filename(arch).startswith(JAVA_CORE + "-")]
    if not jars:
        raise InputError(f"{what}: the runtime pins no {JAVA_CORE} jar to compile against")
    core = jars[0]
    filename = core.filename(arch)
    expected = core.declared_sha256(arch) or lock.input_sha256(
        runtime.id, arch, core.name, core.key(arch), filename
    )
    cached = download(core.url(arch), expected, what, cache)
    build = dest.parent / f".{dest.name}-javac"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    try:
        # javac wants a jar to be named like one; the cache names files by their sha256.
        shutil.copyfile(cached, build / filename)
        sources = sorted(str(p.relative_to(source)) for p in source.rglob("*.java"))
        argv = ["--release", JAVA_RELEASE, "-Xlint:all", "-Werror", "-encoding", "UTF-8",
                "-cp", str(build / filename), "-d", str(dest), *sources]  # fmt: skip
        _javac(argv, what, cwd=source, environ=environ)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return Probe(code=dest, handler=JAVA_HANDLER)


def go_toolchain(runtime: Runtime) -> str:
    """The Go release the matrix pins for the runtime's built inputs (the RIE every image
    carries): the probe is built with it too, so one toolchain serves the whole run."""
    for item in runtime.all_inputs():
        if item.build is not None:
            return item.build.toolchain
    msg = f"{runtime.id}: the Go probe needs a Go toolchain, and the runtime pins none"
    raise InputError(msg + " (a built input's `go.toolchain` in runtimes.yaml)")


def _go(
    runtime: Runtime, source: Path, arch: Arch, dest: Path, environ: Mapping[str, str]
) -> Probe:
    env = gotool.environment(arch, go_toolchain(runtime), environ)
    what = f"the Go probe for {arch.name}"
    gotool.build(".", dest / GO_HANDLER, env=env, cwd=source, what=what, ldflags=["-buildid="])
    return Probe(code=dest, handler=GO_HANDLER)
