"""The Go toolchain on the host: the one environment and the one runner of every go command.

Two things are compiled with Go here, both static executables cross-compiled for a target
architecture: AWS's runtime interface emulator, a built input pinned by sha256 (gobuild.py), and
the Go family's probe (probes.py). Both build under the same rules, so that the same source gives
the same bytes on any machine:

- ``GOTOOLCHAIN``: exactly the Go release the matrix pins (the RIE's ``go.toolchain``); the go
  command fetches it through the module proxy when the host's differs (Go >= 1.21 on the host);
- ``CGO_ENABLED=0`` (static), ``GOOS=linux``, the target's ``GOARCH`` and the baseline
  microarchitecture levels (``GOAMD64=v1``, ``GOARM64=v8.0``), no workspace;
- modules verified: ``GOFLAGS=-mod=readonly`` (go.sum decides; a missing or different hash is an
  error, never a fetch) and the checksum database at its default;
- ``go build -trimpath -buildvcs=false``: no path of this machine, no VCS stamp.

Of the caller's Go variables only those that say where modules come from and where the caches
live are passed on (``PASSED``); the others (``GOFLAGS``, ``GOSUMDB``, ``GONOSUMDB``,
``GOPRIVATE``, ``GOINSECURE``, ``GOAMD64``, …) would change what is verified or built, and are
not. The rest of the environment (``PATH``, ``HOME``, proxies) is the one Settings read.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from . import log
from .errors import InputError
from .matrix import Arch

# The caller's Go variables that reach the go command: where modules come from, where caches are.
PASSED: Final = ("GOPROXY", "GOPATH", "GOMODCACHE", "GOCACHE")


def environment(
    arch: Arch, toolchain: str, environ: Mapping[str, str], *, gocache: Path | None = None
) -> dict[str, str]:
    """The environment of every go command that builds for ``arch`` with ``toolchain``
    (``go1.26.8``): ``environ`` (Settings.environ) less its other Go variables, plus the rules
    above. ``gocache``: a build cache of the caller's own (tests use a fresh one)."""
    env = {
        k: v
        for k, v in environ.items()
        if k in PASSED or not (k.startswith("GO") or k == "CGO_ENABLED")
    }
    env.update(
        CGO_ENABLED="0",
        GOOS="linux",
        GOARCH=arch.docker,  # amd64, arm64: Go's names are Docker's
        GOAMD64="v1",  # the baseline of each architecture, as Go's defaults are today
        GOARM64="v8.0",
        GOFLAGS="-mod=readonly",
        GOTOOLCHAIN=toolchain,  # this release exactly; the go command fetches it if need be
        GOWORK="off",
        GO111MODULE="on",
    )
    if gocache is not None:
        env["GOCACHE"] = str(gocache)
    return env


def run(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, what: str) -> str:
    """``go ARGV…`` in ``cwd`` (echoed as ``+ go …``); its standard output. A missing toolchain
    or a failing command is one InputError naming ``what``."""
    go = shutil.which("go", path=env.get("PATH", ""))
    if go is None:
        msg = (
            f"{what}: `go` is not installed on this machine; the Go toolchain builds it on the "
            "host (see the README's Development section)"
        )
        raise InputError(msg)
    log.command(["go", *argv])
    proc = subprocess.run(
        [go, *argv], cwd=cwd, env=dict(env), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = " | ".join([ln.strip() for ln in proc.stderr.splitlines() if ln.strip()][-3:])
        raise InputError(f"{what}: go {argv[0]} failed (exit {proc.returncode}): {tail}")
    return proc.stdout


def build(
    package: str,
    output: Path,
    *,
    env: Mapping[str, str],
    cwd: Path,
    what: str,
    ldflags: Sequence[str] = (),
) -> Path:
    """``go build`` the main ``package`` (run in ``cwd``, its module) into the file ``output``."""
    argv = ["build", "-trimpath", "-buildvcs=false"]
    if ldflags:
        argv.append(f"-ldflags={' '.join(ldflags)}")
    argv += ["-o", str(output), package]
    output.parent.mkdir(parents=True, exist_ok=True)
    run(argv, env=env, cwd=cwd, what=what)
    return output


def required_at(
    folder: Path,
    module: str,
    version: str,
    *,
    env: Mapping[str, str],
    what: str,
    files: Mapping[str, bytes] | None = None,
) -> dict[str, bytes]:
    """The ``go.mod`` and ``go.sum`` of the Go module in ``folder`` once it requires ``module``
    at ``version`` (``go get``, then ``go mod tidy``), made in a copy (with ``files`` written
    over it first: an earlier move of the same module): ``folder`` is left as it was. The go
    command checks what it fetches against the checksum database."""
    with tempfile.TemporaryDirectory(prefix="lambda-images-gomod-") as tmp:
        copy = Path(tmp) / "module"
        shutil.copytree(folder, copy)
        for name, data in (files or {}).items():
            (copy / name).write_bytes(data)
        run(["get", "--", f"{module}@{version}"], env=env, cwd=copy, what=what)
        run(["mod", "tidy"], env=env, cwd=copy, what=what)
        return {name: (copy / name).read_bytes() for name in ("go.mod", "go.sum")}
