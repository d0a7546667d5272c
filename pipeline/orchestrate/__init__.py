"""The conductor: which stages run, in which order, for every command that runs more than one.

The command line (pipeline/cli) resolves what it is given into a frozen request (requests.py)
and calls one function here; the stages (base, render, inputs, build, test, snapshot, branch,
publish, SBOM, outdated) are peers that know nothing of each other's order. The functions return
results as data, and the command line prints them.

- run.py: what one command shares (settings, matrix, lock, work folder, engine, registries);
- cells.py: a cell's stages (prepare → build → test → snapshot) and the commands made of them;
- release.py: publishing (the registry first, the branch last), mirrors, branches, rebuild;
- freshness.py: outdated images, and the scheduled refresh that rebuilds and republishes them;
- local.py: the generated files, the publish plan, and local invocation.

Each name below is imported from its module on first use (PEP 562), so that a command imports
only the part of the conductor it calls: ``list`` reads the matrix without loading the engine,
registry or SBOM code, and the command line starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cells import (
        build,
        build_cell,
        fetch_cell_inputs,
        lock_inputs,
        make_bases,
        prepare_cell,
        render_cell,
        render_contexts,
        run_cell,
        snapshot_cell,
        snapshot_runtimes,
        test_cell,
        test_targets,
    )
    from .freshness import outdated, outdated_images, outdated_inputs, refresh, upgrade_pins
    from .local import dockerfiles, docs, invoke, job_matrix, plan, runtime_rows, serve_function
    from .release import publish, push_runtime_branch, rebuild
    from .requests import (
        BuildRequest,
        Cells,
        OutdatedRequest,
        PublishRequest,
        RebuildRequest,
        RefreshRequest,
        UpgradeRequest,
    )
    from .run import Run

__all__ = [
    "BuildRequest",
    "Cells",
    "OutdatedRequest",
    "PublishRequest",
    "RebuildRequest",
    "RefreshRequest",
    "Run",
    "UpgradeRequest",
    "build",
    "build_cell",
    "dockerfiles",
    "docs",
    "fetch_cell_inputs",
    "invoke",
    "job_matrix",
    "lock_inputs",
    "make_bases",
    "outdated",
    "outdated_images",
    "outdated_inputs",
    "plan",
    "prepare_cell",
    "publish",
    "push_runtime_branch",
    "rebuild",
    "refresh",
    "render_cell",
    "render_contexts",
    "run_cell",
    "runtime_rows",
    "serve_function",
    "snapshot_cell",
    "snapshot_runtimes",
    "test_cell",
    "test_targets",
    "upgrade_pins",
]

# The modules, the lightest first: each later one imports what it needs of the earlier ones,
# so looking a name up in this order imports nothing that its own module would not. No module
# is named like a name above: importing it would bind the package's attribute to the module.
_PARTS = ("requests", "run", "local", "cells", "release", "freshness")


def __getattr__(name: str) -> Any:
    if name in __all__:
        for part in _PARTS:
            module = importlib.import_module(f".{part}", __name__)
            if hasattr(module, name):
                return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
