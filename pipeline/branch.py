"""Branch: a runtime's snapshot as one orphan commit, force-pushed to a git remote.

Tarballs go through Git LFS. Author, committer and dates are fixed (SOURCE_DATE_EPOCH), so the
same content gives the same commit id, and a push whose commit the remote already has is
skipped. Pushes use ``--force-with-lease`` against the commit read just before, so a branch
that moved meanwhile is reported instead of clobbered. Only runtime ids from the matrix are
ever pushed as branch names.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import log
from .epoch import source_date_epoch
from .errors import BranchError
from .matrix import Matrix

COMMITTER_NAME = "lambda-base-images"
COMMITTER_EMAIL = "lambda-base-images@users.noreply.github.com"
RESERVED_BRANCHES = frozenset({"main", "master"})  # README/LICENSE live there, never a snapshot
GITATTRIBUTES = "*.tar.xz filter=lfs diff=lfs merge=lfs -text\n"


@dataclass(frozen=True, kw_only=True)
class BranchResult:
    runtime: str
    remote: str
    commit: str
    previous: str | None
    pushed: bool  # False when the remote already had this exact commit


def _git(args: list[str], cwd: Path, env: dict[str, str] | None = None, quiet: bool = False) -> str:
    argv = ["git", *args]
    if not quiet:
        log.command(argv)
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise BranchError(f"`git {args[0]}` failed: {' '.join(detail[-3:])}")
    return proc.stdout.strip()


def _commit_env(epoch: int) -> dict[str, str]:
    stamp = f"@{epoch} +0000"
    return {
        **os.environ,
        "GIT_AUTHOR_NAME": COMMITTER_NAME,
        "GIT_AUTHOR_EMAIL": COMMITTER_EMAIL,
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_NAME": COMMITTER_NAME,
        "GIT_COMMITTER_EMAIL": COMMITTER_EMAIL,
        "GIT_COMMITTER_DATE": stamp,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
    }


def remote_head(remote: str, branch: str) -> str | None:
    out = _git(["ls-remote", "--heads", remote, f"refs/heads/{branch}"], Path.cwd(), quiet=True)
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha
    return None


class _ReadNow:
    """Sentinel: read the branch head from the remote just before pushing."""


READ_NOW = _ReadNow()


def push_branch(
    matrix: Matrix,
    runtime_id: str,
    content: Path,
    remote: str,
    *,
    expected: str | _ReadNow | None = READ_NOW,
) -> BranchResult:
    """Commit ``content`` as the only commit of branch ``runtime_id`` and force-push it.

    ``expected`` is the commit the caller last saw on the remote (None: no branch); by default
    it is read now. The push is refused if the branch has moved since.
    """
    if runtime_id in RESERVED_BRANCHES:
        raise BranchError(f"refusing to push {runtime_id!r}: that branch is not a runtime's")
    matrix.runtime(runtime_id)  # only runtimes named in runtimes.yaml become branches
    if shutil.which("git-lfs") is None:
        raise BranchError("git-lfs is not installed; branches keep their tarballs in Git LFS")
    epoch = source_date_epoch()
    previous = remote_head(remote, runtime_id) if isinstance(expected, _ReadNow) else expected
    with tempfile.TemporaryDirectory(prefix="lambda-images-branch-") as tmp:
        repo = Path(tmp) / "repo"
        env = _commit_env(epoch)
        _git(["init", "--quiet", "--initial-branch", runtime_id, str(repo)], Path(tmp), env, True)
        _git(["lfs", "install", "--local", "--skip-smudge"], repo, env, True)
        _git(["config", "lfs.locksverify", "false"], repo, env, True)
        shutil.copytree(content, repo, dirs_exist_ok=True, copy_function=os.link)
        (repo / ".gitattributes").write_text(GITATTRIBUTES, encoding="utf-8")
        _git(["add", "--all"], repo, env, True)
        _git(["commit", "--quiet", "-m", f"Update source for {runtime_id} image"], repo, env, True)
        commit = _git(["rev-parse", "HEAD"], repo, env, True)
        if commit == previous:
            log.info(f"{runtime_id}: branch already at {commit[:12]}, nothing to push")
            return BranchResult(
                runtime=runtime_id, remote=remote, commit=commit, previous=previous, pushed=False
            )
        lease = f"--force-with-lease=refs/heads/{runtime_id}:{previous or ''}"
        try:
            _git(["push", "--quiet", lease, remote, f"HEAD:refs/heads/{runtime_id}"], repo, env)
        except BranchError as exc:
            if "stale info" in str(exc) or "rejected" in str(exc):
                msg = (
                    f"{runtime_id}: the branch on {remote} moved since it was read "
                    f"(expected {previous or 'no branch'}); nothing was pushed. Re-run to "
                    f"publish over the new head. ({exc})"
                )
                raise BranchError(msg) from None
            raise
    return BranchResult(
        runtime=runtime_id, remote=remote, commit=commit, previous=previous, pushed=True
    )
