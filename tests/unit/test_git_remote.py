"""Git remotes from the command line: credentials inside a URL are refused before any work
(shown as ***), and a remote that looks like an option is never taken for one."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest
from cli_runner import lambda_images

from pipeline.branch import remote_head
from pipeline.errors import BranchError, UsageError
from pipeline.git import check_remote, git_env

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "remote",
    [
        "https://x-access-token:{t}@github.com/owner/repo.git",
        "https://{t}@github.com/owner/repo.git",
        "http://user:{t}@127.0.0.1:8080/repo.git",
        "ssh://git:{t}@example.com/repo.git",
    ],
)
def test_credentials_in_a_remote_url_are_refused_and_not_shown(remote: str) -> None:
    token = secrets.token_hex(12)
    with pytest.raises(UsageError, match="credentials in the URL are refused") as caught:
        check_remote(remote.format(t=token))
    assert token not in str(caught.value)
    assert "***@" in str(caught.value)


@pytest.mark.parametrize(
    "remote",
    [
        "file:///srv/git/lambda.git",
        "ssh://git@github.com/owner/repo.git",
        "git@github.com:owner/repo.git",
        "https://github.com/owner/repo.git",
        "/srv/git/lambda.git",
    ],
)
def test_remotes_without_secrets_are_accepted(remote: str) -> None:
    check_remote(remote)


@pytest.mark.parametrize(
    "remote",
    [
        "https://github.com/owner/repo.git?access_token={t}",
        "https://github.com/owner/repo.git#{t}",
        "https://github.com?private_token={t}",
    ],
)
def test_a_token_in_the_query_of_a_remote_is_refused_and_not_shown(remote: str) -> None:
    token = secrets.token_hex(12)
    with pytest.raises(UsageError, match="credentials in the URL are refused") as caught:
        check_remote(remote.format(t=token))
    assert token not in str(caught.value)
    assert "?***" in str(caught.value)


@pytest.mark.parametrize(
    ("remote", "says"),
    [
        ("ext::sh -c touch% /tmp/pwned", "remote helpers (<transport>::<address>, such as ext::)"),
        ("fd::7", "remote helpers"),
        ("ftp://example.com/repo.git", "expected a file, git, http, https, ssh URL"),
        ("javascript://x", "expected a file, git, http, https, ssh URL"),
    ],
)
def test_a_remote_on_another_transport_is_refused(remote: str, says: str) -> None:
    with pytest.raises(UsageError, match=re.escape(says)):
        check_remote(remote)


def test_git_itself_refuses_a_remote_helper_even_where_its_config_allows_one(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    proc = subprocess.run(
        ["git", "-c", "protocol.ext.allow=always", "ls-remote", f"ext::sh -c touch% {marker}"],
        cwd=tmp_path, env=git_env(os.environ), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert not marker.exists()


def test_a_remote_that_looks_like_an_option_is_not_one(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(BranchError):
        remote_head(f"--upload-pack=touch {marker};false", "main", os.environ)
    assert not marker.exists()


@pytest.mark.parametrize(
    "args",
    [
        ("branch", "provided.debian12", "--git-remote"),
        ("publish", "--registry", "127.0.0.1:5000/ns", "--git-remote"),
        ("rebuild", "provided.debian12", "--git-remote"),
        ("build", "provided.debian12", "--published"),
    ],
)
def test_every_command_refuses_a_remote_with_credentials_first(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    token = secrets.token_hex(12)
    work = tmp_path / "work"
    proc = lambda_images(
        "--work", str(work), *args, f"https://u:{token}@example.invalid/r.git",
        cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "https://***@example.invalid/r.git" in lines[0]
    assert token not in proc.stdout + proc.stderr
    assert not work.exists()  # nothing was started
