"""Running git: one runner, one environment (no prompts, no system config, fixed identity).

Every git call of the pipeline goes through ``git()``, which echoes it (unless quiet), puts
``--`` where operands follow options when the caller asks for it, and turns a failure into a
BranchError carrying git's last lines.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from . import log
from .errors import BranchError, UsageError

COMMITTER_NAME: Final = "lambda-base-images"
COMMITTER_EMAIL: Final = "lambda-base-images@users.noreply.github.com"


# Transports a remote may use: git's own (http, https, ssh, git, file, and the scp-like and
# local-path forms). Remote helpers (``ext::cmd`` runs a command, ``fd::``) are not among them.
ALLOWED_PROTOCOLS: Final = ("file", "git", "http", "https", "ssh")
_SCHEMES: Final = {"file", "git", "http", "https", "ssh", "git+ssh", "ssh+git"}


def redacted_remote(remote: str) -> str:
    """``remote`` with the user info of a URL (``https://user:token@host``) replaced by ***,
    and its query and fragment (where tokens travel too) by ?***."""
    scheme, sep, rest = remote.partition("://")
    if not sep:
        return remote
    host, slash, path = rest.partition("/")
    if "@" in host:
        host = "***@" + host.rpartition("@")[2]
    for mark in "?#":
        if mark in host:
            host = host.partition(mark)[0] + "?***"
            slash = path = ""
        if mark in path:
            path = path.partition(mark)[0] + "?***"
    return f"{scheme}{sep}{host}{slash}{path}"


def check_remote(remote: str) -> None:
    """Refuse a git remote URL that carries credentials (``https://user:token@host/…``, or a
    query string such as ``?access_token=…``), or that names a transport other than git's own
    (``ext::`` runs a command).

    Such a URL would reach git's argument list (visible to every user of the machine), its
    error messages, our logs and reports. Credentials belong in a git credential helper
    (``git config --global credential.helper``, or ``GIT_ASKPASS``), which git asks itself.
    An ssh user name (``ssh://git@host/…``) is not a secret and is accepted.
    """
    where = f"--git-remote {redacted_remote(remote)}"
    if "://" not in remote:
        if "::" in remote:
            msg = (
                f"{where}: remote helpers (<transport>::<address>, such as ext::) are refused; "
                f"give a {', '.join(ALLOWED_PROTOCOLS)} URL, host:path or a folder"
            )
            raise UsageError(msg)
        return
    scheme = remote.partition("://")[0].lower()
    if scheme not in _SCHEMES:
        msg = f"{where}: expected a {', '.join(ALLOWED_PROTOCOLS)} URL, host:path or a folder"
        raise UsageError(msg)
    try:
        parts = urlsplit(remote)
        password, user = parts.password, parts.username
    except ValueError:
        password, user = None, None
    secret = password is not None or (user and scheme in ("http", "https"))
    secret = secret or "?" in remote or "#" in remote
    if secret or ("@" in remote.partition("://")[2].partition("/")[0] and user is None):
        msg = (
            f"{where}: credentials in the URL are refused, in its user part or its query (git "
            "would show them in its process list and messages); keep them in a git credential "
            "helper (git config --global credential.helper …) or GIT_ASKPASS instead"
        )
        raise UsageError(msg)


def git_env(environ: Mapping[str, str], epoch: int | None = None, **extra: str) -> dict[str, str]:
    """The environment of every git call: ``environ`` (Settings.environ, the process's) without
    prompts or system config; with ``epoch``, a fixed author, committer and date (the same
    content then gives the same commit id)."""
    env = {
        **environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        # git itself refuses other transports too (a remote given another way, a submodule).
        "GIT_ALLOW_PROTOCOL": ":".join(ALLOWED_PROTOCOLS),
        **extra,
    }
    if epoch is not None:
        stamp = f"@{epoch} +0000"
        env |= {
            "GIT_AUTHOR_NAME": COMMITTER_NAME,
            "GIT_AUTHOR_EMAIL": COMMITTER_EMAIL,
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_NAME": COMMITTER_NAME,
            "GIT_COMMITTER_EMAIL": COMMITTER_EMAIL,
            "GIT_COMMITTER_DATE": stamp,
        }
    return env


def run_git(
    args: Sequence[str], cwd: Path, env: dict[str, str], *, quiet: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run git (``env``: from git_env) and return the finished process, whatever its exit
    status."""
    argv = ["git", *args]
    if not quiet:
        log.command(argv)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def git(args: Sequence[str], cwd: Path, env: dict[str, str], *, quiet: bool = False) -> str:
    """Run git; its stdout, or a BranchError with the last lines it printed."""
    proc = run_git(args, cwd, env, quiet=quiet)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise BranchError(f"`git {args[0]}` failed: {' '.join(detail[-3:])}")
    return proc.stdout.strip()
