"""Built inputs: Go programs compiled on the host from a pinned module version.

The go command fetches the module through the Go module proxy and checks it against the
checksum database (``GOSUMDB`` keeps its default; ``GONOSUMDB``, ``GOPRIVATE``, ``GOINSECURE``
and the like are cleared for the child); the module's dependencies are checked against its own
go.sum (``GOFLAGS=-mod=readonly``: a missing or different hash is an error, never a fetch).
The module tree's hash (``h1:…``, as go.sum writes it) must also equal the one in
runtimes.lock.json.

The build is reproducible: the toolchain named in runtimes.yaml (``GOTOOLCHAIN``), no cgo,
``-trimpath``, ``-buildvcs=false`` and fixed microarchitecture levels, so the same version gives
the same bytes on any machine; ``lambda-images lock`` pins each architecture's binary by sha256
like any download, and a build whose bytes differ is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from . import log
from .errors import InputError
from .matrix import ARCHES, GoBuild, Input

# Variables of the caller's environment that would change what is verified or what is built.
CLEARED: Final = (
    "CGO_ENABLED",
    "GO111MODULE",
    "GOAMD64",
    "GOARCH",
    "GOARM64",
    "GOEXPERIMENT",
    "GOFLAGS",
    "GOINSECURE",
    "GONOPROXY",
    "GONOSUMCHECK",
    "GONOSUMDB",
    "GONOVERIFY",
    "GOOS",
    "GOPRIVATE",
    "GOSUMDB",
    "GOTOOLCHAIN",
    "GOWORK",
)


def go_environment(
    build: GoBuild, arch: str, base: Mapping[str, str], *, gocache: Path | None = None
) -> dict[str, str]:
    """The environment of every go command for ``build`` on ``arch`` (``base`` less CLEARED)."""
    env = {k: v for k, v in base.items() if k not in CLEARED}
    env.update(
        CGO_ENABLED="0",
        GOOS="linux",
        GOARCH=ARCHES[arch].docker,  # amd64, arm64: Go's names are Docker's
        GOAMD64="v1",  # the baseline of each architecture, as Go's defaults are today
        GOARM64="v8.0",
        GOFLAGS="-mod=readonly",
        GOTOOLCHAIN=build.toolchain,  # this release exactly; the go command fetches it if need be
        GOWORK="off",
        GO111MODULE="on",
    )
    if gocache is not None:
        env["GOCACHE"] = str(gocache)
    return env


@dataclass(frozen=True, kw_only=True)
class Built:
    path: Path
    sha256: str
    module_sum: str  # h1:… of the module tree the binary was built from


# Where Go's own installation instructions put it, for hosts whose PATH does not name it.
GO_INSTALL_DIR: Final = Path("/usr/local/go/bin")


def go_command(env: Mapping[str, str]) -> str:
    found = shutil.which("go", path=env.get("PATH")) or shutil.which("go", path=str(GO_INSTALL_DIR))
    return found or "go"


def _go(argv: list[str], env: Mapping[str, str], cwd: Path, what: str) -> str:
    full = [go_command(env), *argv]
    log.command(full)
    try:
        proc = subprocess.run(
            full, cwd=cwd, env=dict(env), capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        msg = f"{what}: the Go toolchain (`go`) is not installed; it builds this input"
        raise InputError(msg) from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        detail = " ".join(lines[-3:]) or f"exit {proc.returncode}"
        raise InputError(f"{what}: go {argv[0]} failed: {detail}")
    return proc.stdout


def download_module(
    item: Input, arch: str, env: Mapping[str, str], what: str, work: Path
) -> tuple[Path, str]:
    """The module's verified source tree (in the module cache, read-only) and its h1 hash."""
    assert item.build is not None
    out = _go(["mod", "download", "-json", f"{item.build.module}@{item.version}"], env, work, what)
    info = json.loads(out)
    if info.get("Error"):
        raise InputError(f"{what}: {item.build.module}@{item.version}: {info['Error']}")
    return Path(info["Dir"]), str(info["Sum"])


def build_input(
    item: Input,
    arch: str,
    dest: Path,
    *,
    module_sum: str | None,
    what: str,
    base_env: Mapping[str, str] | None = None,
    gocache: Path | None = None,
) -> Built:
    """``go build`` the input's package for ``arch`` into ``dest`` (a file path).

    ``module_sum`` is the lock's h1 hash of the module; None while locking, when it is read
    from what the go command verified.
    """
    build = item.build
    if build is None:
        raise ValueError(f"{item.name} is not a built input")
    env = go_environment(build, arch, os.environ if base_env is None else base_env, gocache=gocache)
    with tempfile.TemporaryDirectory(prefix="lambda-images-go-") as tmp:
        source, actual_sum = download_module(item, arch, env, what, Path(tmp))
        if module_sum is not None and actual_sum != module_sum:
            msg = (
                f"{what}: {build.module}@{item.version} has the go.sum hash {actual_sum}, but "
                f"the lock pins {module_sum}; refusing it"
            )
            raise InputError(msg)
        argv = ["build", "-trimpath", "-buildvcs=false"]
        if build.ldflags:
            argv.append(f"-ldflags={' '.join(build.ldflags)}")
        argv += ["-o", str(dest), build.package]
        dest.parent.mkdir(parents=True, exist_ok=True)
        _go(argv, env, source, what)
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    return Built(path=dest, sha256=digest, module_sum=actual_sum)
