"""The conductor: which stages run, in which order, for every command that runs more than one.

The command line (pipeline/cli) resolves what it is given into a frozen request (requests.py)
and calls one function here; the stages (base, render, inputs, build, test, snapshot, branch,
publish, SBOM, outdated) are peers that know nothing of each other's order. The functions return
results as data, and the command line prints them.

- run.py: what one command shares (settings, matrix, lock, work folder, engine, registries);
- cells.py: a cell's stages (prepare → build → test → snapshot) and the commands made of them;
- release.py: publishing (the registry first, the branch last), mirrors, branches, rebuild;
- refresh.py: outdated images, and the scheduled refresh that rebuilds and republishes them.
"""

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
from .refresh import outdated_images, refresh
from .release import publish, push_runtime_branch, rebuild
from .requests import (
    BuildRequest,
    Cells,
    OutdatedRequest,
    PublishRequest,
    RebuildRequest,
    RefreshRequest,
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
    "build",
    "build_cell",
    "fetch_cell_inputs",
    "lock_inputs",
    "make_bases",
    "outdated_images",
    "prepare_cell",
    "publish",
    "push_runtime_branch",
    "rebuild",
    "refresh",
    "render_cell",
    "render_contexts",
    "run_cell",
    "snapshot_cell",
    "snapshot_runtimes",
    "test_cell",
    "test_targets",
]
