"""Branch: a runtime's snapshot as one orphan commit, force-pushed to a git remote.

Tarballs go through Git LFS. Author, committer and dates are fixed (SOURCE_DATE_EPOCH), so the
same content gives the same commit id, and a push whose commit the remote already has is
skipped. Pushes use ``--force-with-lease`` against the commit read just before, so a branch
that moved meanwhile is reported instead of clobbered. Only runtime ids from the matrix are
ever pushed as branch names.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import log
from .digests import sha256_bytes, sha256_file, sha256_json
from .errors import BranchError
from .git import git, git_env
from .matrix import Runtime
from .text import plain_line

RESERVED_BRANCHES = frozenset({"main", "master"})  # README/LICENSE live there, never a snapshot
GITATTRIBUTES = "*.tar.xz filter=lfs diff=lfs merge=lfs -text\n"
MESSAGE_LINES = 2000  # lines of changes in a commit message; the README holds them all


@dataclass(frozen=True, kw_only=True)
class BranchResult:
    runtime: str
    remote: str
    commit: str
    previous: str | None
    pushed: bool  # False when the remote already had this exact commit


_LAYER_NAME = re.compile(r"[0-9a-f]{64}\.tar\.xz")


def content_digest(content: Path, *, epoch: int, remote: str, message: str) -> str:
    """What a push of ``content`` as the commit ``message`` at ``epoch`` to ``remote`` sends:
    the same digest gives the same commit on the same branch. Text files count by content,
    layer tarballs by their name (the sha256 of their content) and size; the remote by its
    sha256, so that a URL never reaches a record."""
    files = []
    for path in sorted(p for p in content.rglob("*") if p.is_file()):
        rel = path.relative_to(content).as_posix()
        if _LAYER_NAME.fullmatch(path.name):
            files.append([rel, path.stat().st_size])
        else:
            files.append([rel, sha256_file(path)])
    remote_sha = sha256_bytes(remote.encode("utf-8"))
    return sha256_json({"files": files, "epoch": epoch, "remote": remote_sha, "message": message})


def remote_head(remote: str, branch: str, environ: Mapping[str, str]) -> str | None:
    """The commit ``branch`` names on ``remote`` (a remote checked at the command line)."""
    out = git(
        ["ls-remote", "--heads", "--", remote, f"refs/heads/{branch}"],
        Path.cwd(),
        git_env(environ),
        quiet=True,
    )
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha
    return None


class _ReadNow:
    """Sentinel: read the branch head from the remote just before pushing."""


READ_NOW = _ReadNow()


def _moved(runtime_id: str, remote: str, previous: str | None, detail: str = "") -> BranchError:
    msg = (
        f"{runtime_id}: the branch on {remote} moved since it was read "
        f"(expected {previous or 'no branch'}); nothing was pushed. Re-run to "
        f"publish over the new head.{f' ({detail})' if detail else ''}"
    )
    return BranchError(msg)


def check_lease(
    runtime: Runtime, remote: str, expected: str | None, environ: Mapping[str, str]
) -> None:
    """BranchError when the runtime's branch no longer is at ``expected`` (another publisher)."""
    if remote_head(remote, runtime.id, environ) != expected:
        raise _moved(runtime.id, remote, expected)


def commit_message(runtime_id: str, changes: Sequence[str] = ()) -> str:
    """The branch commit's message: AWS's subject line, then ``changes`` as plain lines."""
    subject = f"Update source for {runtime_id} image"
    body = [plain_line(line) for line in changes[:MESSAGE_LINES]]
    if len(changes) > MESSAGE_LINES:
        body.append(f"… and {len(changes) - MESSAGE_LINES} more lines (see the branch README)")
    text = "\n".join(body).strip("\n")
    return f"{subject}\n\n{text}\n" if text.strip() else subject


def push_branch(
    runtime: Runtime,
    content: Path,
    remote: str,
    environ: Mapping[str, str],
    *,
    epoch: int,
    expected: str | _ReadNow | None = READ_NOW,
    changes: Sequence[str] = (),
) -> BranchResult:
    """Commit ``content`` as the only commit of the runtime's branch and force-push it.

    ``expected`` is the commit the caller last saw on the remote (None: no branch); by default
    it is read now. The push is refused if the branch has moved since. ``changes`` becomes the
    body of the commit message (publish: what changed since the previous release), each line
    made one line of plain text (text.plain_line: package names come from inside the image),
    at most MESSAGE_LINES of them.
    """
    runtime_id = runtime.id  # a runtime of the matrix: only those become branches
    if runtime_id in RESERVED_BRANCHES:
        raise BranchError(f"refusing to push {runtime_id!r}: that branch is not a runtime's")
    if shutil.which("git-lfs") is None:
        raise BranchError("git-lfs is not installed; branches keep their tarballs in Git LFS")
    if isinstance(expected, _ReadNow):
        previous = remote_head(remote, runtime_id, environ)
    else:
        previous = expected
    with tempfile.TemporaryDirectory(prefix="lambda-images-branch-") as tmp:
        repo = Path(tmp) / "repo"
        env = git_env(environ, epoch)
        git(
            ["init", "--quiet", "--initial-branch", runtime_id, "--", str(repo)],
            Path(tmp),
            env,
            quiet=True,
        )
        git(["lfs", "install", "--local", "--skip-smudge"], repo, env, quiet=True)
        git(["config", "lfs.locksverify", "false"], repo, env, quiet=True)
        shutil.copytree(content, repo, dirs_exist_ok=True, copy_function=os.link)
        (repo / ".gitattributes").write_text(GITATTRIBUTES, encoding="utf-8")
        git(["add", "--all"], repo, env, quiet=True)
        message = commit_message(runtime_id, changes)
        git(
            ["commit", "--quiet", "-m", message],
            repo,
            env,
            quiet=True,
        )
        commit = git(["rev-parse", "HEAD"], repo, env, quiet=True)
        if commit == previous:
            log.info(f"{runtime_id}: branch already at {commit[:12]}, nothing to push")
            return BranchResult(
                runtime=runtime_id, remote=remote, commit=commit, previous=previous, pushed=False
            )
        lease = f"--force-with-lease=refs/heads/{runtime_id}:{previous or ''}"
        try:
            git(
                ["push", "--quiet", lease, "--", remote, f"HEAD:refs/heads/{runtime_id}"], repo, env
            )
        except BranchError as exc:
            if "stale info" in str(exc) or "rejected" in str(exc):
                raise _moved(runtime_id, remote, previous, str(exc)) from None
            raise
    return BranchResult(
        runtime=runtime_id, remote=remote, commit=commit, previous=previous, pushed=True
    )
