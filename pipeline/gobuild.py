"""Built inputs: Go programs compiled on the host from a pinned module version.

The go command fetches the module through the Go module proxy and checks it against the
checksum database; the module's dependencies are checked against its own go.sum. The module
tree's hash (``h1:…``, as go.sum writes it) must also equal the one in runtimes.lock.json.

The build is reproducible under the Go rules of gotool.py (the toolchain named in runtimes.yaml,
no cgo, ``-trimpath``, ``-buildvcs=false``, fixed microarchitecture levels), so the same version
gives the same bytes on any machine; ``lambda-images lock`` pins each architecture's binary by
sha256 like any download, and a build whose bytes differ is refused.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import gotool
from .errors import InputError
from .matrix import ARCHES, Input


@dataclass(frozen=True, kw_only=True)
class Built:
    path: Path
    sha256: str
    module_sum: str  # h1:… of the module tree the binary was built from


def download_module(item: Input, env: Mapping[str, str], what: str, work: Path) -> tuple[Path, str]:
    """The module's verified source tree (in the module cache, read-only) and its h1 hash."""
    assert item.build is not None
    module = f"{item.build.module}@{item.version}"
    out = gotool.run(["mod", "download", "-json", module], env=env, cwd=work, what=what)
    info = json.loads(out)
    if info.get("Error"):
        raise InputError(f"{what}: {module}: {info['Error']}")
    return Path(info["Dir"]), str(info["Sum"])


def build_input(
    item: Input,
    arch: str,
    dest: Path,
    *,
    module_sum: str | None,
    what: str,
    environ: Mapping[str, str],
    gocache: Path | None = None,
) -> Built:
    """``go build`` the input's package for ``arch`` into ``dest`` (a file path), in the Go
    environment gotool.py makes of ``environ`` (Settings.environ).

    ``module_sum`` is the lock's h1 hash of the module; None while locking, when it is read
    from what the go command verified.
    """
    build = item.build
    if build is None:
        raise ValueError(f"{item.name} is not a built input")
    env = gotool.environment(ARCHES[arch], build.toolchain, environ, gocache=gocache)
    with tempfile.TemporaryDirectory(prefix="lambda-images-go-") as tmp:
        source, actual_sum = download_module(item, env, what, Path(tmp))
        if module_sum is not None and actual_sum != module_sum:
            msg = (
                f"{what}: {build.module}@{item.version} has the go.sum hash {actual_sum}, but "
                f"the lock pins {module_sum}; refusing it"
            )
            raise InputError(msg)
        gotool.build(build.package, dest, env=env, cwd=source, what=what, ldflags=build.ldflags)
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    return Built(path=dest, sha256=digest, module_sum=actual_sum)
