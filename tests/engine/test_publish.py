"""Publishing small snapshots to a real registry (htpasswd auth) and a bare git remote with LFS:
faults, a registry that dies mid-publish, a failed cell, ECR Public credentials, a moved branch.
Images built by the pipeline are published in test_publish_images.py."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from publish_helpers import (
    FAST_RETRY,
    credentials,
    git_head,
    make_runtime,
    publish_at,
    push_foreign_commit,
)
from servers import FaultProxy

from pipeline.matrix import Matrix
from pipeline.oci.credentials import Credentials, ecr_public_credentials
from pipeline.oci.transport import RetryPolicy
from pipeline.publish.report import PublishReport

PROVIDED = "provided.debian12"
PYTHON = "python3.11.debian12"
BOTH = ("x86_64", "arm64")
# Release times an hour apart: a second release in the same hour would reuse its dated tags.
RELEASE_A = 1796029200
RELEASE_B = RELEASE_A + 3600


@pytest.fixture
def proxy(registry_server: Any) -> Iterator[FaultProxy]:
    p = FaultProxy(registry_server.host)
    yield p
    p.close()


def tags_now(server: Any, report: PublishReport, namespace: str) -> dict[str, str | None]:
    out = {}
    for rt in report.runtimes:
        repo = f"{namespace}/{rt.repository.rsplit('/', 1)[1]}"
        out.update({f"{repo}:{t}": server.tag_digest(repo, t) for t in rt.tags})
    return out


def expected(report: PublishReport, namespace: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for rt in report.runtimes:
        repo = f"{namespace}/{rt.repository.rsplit('/', 1)[1]}"
        out.update({f"{repo}:{t}": d for t, d in rt.tags.items()})
    return out


def test_faulty_network_still_publishes_the_same_digests(
    registry_server: Any, matrix: Matrix, tmp_path: Path
) -> None:
    make_runtime(tmp_path, PROVIDED, "A", BOTH)
    make_runtime(tmp_path, PYTHON, "A", BOTH)
    creds = credentials(registry_server)
    clean = publish_at(
        matrix, [PROVIDED, PYTHON], work=tmp_path, registry=f"{registry_server.host}/clean",
        credentials=creds, retry=FAST_RETRY,
    )  # fmt: skip
    faulty_proxy = FaultProxy(registry_server.host, fault_rate=0.3, seed=3)
    try:
        faulty = publish_at(
            matrix, [PROVIDED, PYTHON], work=tmp_path, registry=f"{faulty_proxy.host}/faulty",
            credentials=creds, retry=FAST_RETRY,
        )  # fmt: skip
    finally:
        faulty_proxy.close()
    assert clean.ok and faulty.ok, faulty.as_json()["failed"]
    injected = faulty_proxy.faults
    assert (
        injected["503"] and injected["429"] and injected["drop-before"] and injected["drop-after"]
    )
    assert sum(injected.values()) >= 0.15 * faulty_proxy.requests  # about 30% were asked for
    assert [r.tags for r in faulty.runtimes] == [r.tags for r in clean.runtimes]
    assert tags_now(registry_server, faulty, "faulty") == expected(faulty, "faulty")


def test_registry_stopped_mid_publish_leaves_the_previous_release(
    registry_server: Any, matrix: Matrix, tmp_path: Path, proxy: FaultProxy
) -> None:
    creds = credentials(registry_server)
    target = f"{proxy.host}/stopped"
    make_runtime(tmp_path / "a", PROVIDED, "A", BOTH)
    release_a = publish_at(
        matrix, [PROVIDED], work=tmp_path / "a", registry=target, credentials=creds,
        retry=FAST_RETRY, release=RELEASE_A,
    )  # fmt: skip
    assert release_a.ok

    def stop_on_first_upload(method: str, path: str) -> None:
        if method == "PUT" and "/blobs/uploads/" in path and proxy.on_request is not None:
            proxy.on_request = None
            registry_server.stop()

    make_runtime(tmp_path / "b", PROVIDED, "B", BOTH)
    proxy.on_request = stop_on_first_upload
    try:
        broken = publish_at(
            matrix, [PROVIDED], work=tmp_path / "b", registry=target, credentials=creds,
            retry=RetryPolicy(attempts=3, initial=0.02, cap=0.1, timeout=10), release=RELEASE_B,
        )  # fmt: skip
    finally:
        registry_server.start()
    assert not broken.ok
    reason = broken.runtimes[0].reason or ""
    assert "unreachable" in reason and "run again" in reason
    assert tags_now(registry_server, release_a, "stopped") == expected(release_a, "stopped")
    # Every tag resolves to a complete manifest, and the index's children exist.
    index = registry_server.get(
        f"/v2/stopped/provided/manifests/{release_a.runtimes[0].index}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
    ).json()
    for child in index["manifests"]:
        assert registry_server.tag_digest("stopped/provided", child["digest"]) == child["digest"]

    again = publish_at(
        matrix, [PROVIDED], work=tmp_path / "b", registry=target, credentials=creds,
        retry=FAST_RETRY, release=RELEASE_B,
    )  # fmt: skip
    assert again.ok and again.runtimes[0].status == "published"
    assert tags_now(registry_server, again, "stopped") == expected(again, "stopped")
    assert again.runtimes[0].index != release_a.runtimes[0].index


def test_a_failed_arm64_cell_moves_no_tag_of_its_runtime(
    registry_server: Any, matrix: Matrix, tmp_path: Path, git_remote: str
) -> None:
    creds = credentials(registry_server)
    target = f"{registry_server.host}/cells"
    work = tmp_path / "work"
    for rt in (PROVIDED, PYTHON):
        make_runtime(work, rt, "A", BOTH)
    first = publish_at(
        matrix, [PROVIDED, PYTHON], work=work, registry=target, credentials=creds,
        git_remote=git_remote, retry=FAST_RETRY, release=RELEASE_A,
    )  # fmt: skip
    assert first.ok
    provided_head = git_head(git_remote, PROVIDED)

    for rt in (PROVIDED, PYTHON):
        make_runtime(work, rt, "B", BOTH)
    (work / PROVIDED / "arm64" / "test.json").write_text('{"ok": false}')
    report_file = tmp_path / "report.json"
    second = publish_at(
        matrix, [PROVIDED, PYTHON], work=work, registry=target, credentials=creds,
        git_remote=git_remote, retry=FAST_RETRY, report_path=report_file, release=RELEASE_B,
    )  # fmt: skip
    assert not second.ok
    summary = json.loads(report_file.read_text())
    assert summary["published"] == [PYTHON]
    assert "arm64 did not pass its tests" in summary["failed"][PROVIDED]
    provided_first = [r for r in first.runtimes if r.runtime == PROVIDED]
    python_second = [r for r in second.runtimes if r.runtime == PYTHON]
    first_provided = PublishReport(registry="", git_remote=None, runtimes=provided_first)
    second_python = PublishReport(registry="", git_remote=None, runtimes=python_second)
    # No tag of provided moved, not even its x86_64 ones; python published its new release.
    assert tags_now(registry_server, first_provided, "cells") == expected(first_provided, "cells")
    assert tags_now(registry_server, second_python, "cells") == expected(second_python, "cells")
    assert git_head(git_remote, PROVIDED) == provided_head
    assert git_head(git_remote, PYTHON) == python_second[0].branch["commit"]  # type: ignore[index]


def test_wrong_password_fails_fast_and_names_the_fix(
    registry_server: Any, matrix: Matrix, tmp_path: Path, proxy: FaultProxy
) -> None:
    make_runtime(tmp_path, PROVIDED, "A", BOTH)
    wrong = Credentials(username="tester", password="not-the-password", source="the test")
    report = publish_at(
        matrix, [PROVIDED], work=tmp_path, registry=f"{proxy.host}/denied", credentials=wrong,
        retry=FAST_RETRY,
    )  # fmt: skip
    reason = report.runtimes[0].reason or ""
    assert "HTTP 401" in reason and "refused user 'tester'" in reason
    assert "not-the-password" not in reason
    assert proxy.requests <= 3  # /v2/, one refused request and its re-authentication: no retries


def test_ecr_public_token_pushes_and_never_leaks(
    registry_server: Any,
    matrix: Matrix,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = registry_server.users["AWS"]
    token = base64.b64encode(f"AWS:{password}".encode()).decode()
    client = boto3.client(
        "ecr-public",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stub:
        stub.add_response(
            "get_authorization_token",
            {
                "authorizationData": {
                    "authorizationToken": token,
                    "expiresAt": dt.datetime(2030, 1, 1),
                }
            },
            {},
        )
        creds = ecr_public_credentials(client)
        stub.assert_no_pending_responses()
    work = tmp_path / "work"
    make_runtime(work, PROVIDED, "A", BOTH)
    report_file = tmp_path / "report.json"
    report = publish_at(
        matrix, [PROVIDED], work=work, registry=f"{registry_server.host}/ecr", credentials=creds,
        retry=FAST_RETRY, report_path=report_file,
    )  # fmt: skip
    assert report.ok
    assert tags_now(registry_server, report, "ecr") == expected(report, "ecr")
    captured = capfd.readouterr()
    seen = [captured.out, captured.err, caplog.text, repr(creds), repr(report)]
    seen += [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file()]
    for text in seen:
        assert token not in text
        assert password not in text


def test_push_to_a_moved_branch_fails_and_changes_nothing(
    registry_server: Any, matrix: Matrix, tmp_path: Path, git_remote: str, proxy: FaultProxy
) -> None:
    creds = credentials(registry_server)
    target = f"{proxy.host}/moved"
    make_runtime(tmp_path / "a", PROVIDED, "A", BOTH)
    first = publish_at(
        matrix, [PROVIDED], work=tmp_path / "a", registry=target, credentials=creds,
        git_remote=git_remote, retry=FAST_RETRY, release=RELEASE_A,
    )  # fmt: skip
    assert first.ok
    foreign: list[str] = []

    def someone_pushes(method: str, path: str) -> None:
        # After this publish read the branch head and before it pushes the branch.
        if method == "PUT" and "/manifests/" in path and not foreign:
            foreign.append(push_foreign_commit(git_remote, PROVIDED, tmp_path))

    proxy.on_request = someone_pushes
    make_runtime(tmp_path / "b", PROVIDED, "B", BOTH)
    second = publish_at(
        matrix, [PROVIDED], work=tmp_path / "b", registry=target, credentials=creds,
        git_remote=git_remote, retry=FAST_RETRY, release=RELEASE_B,
    )  # fmt: skip
    assert foreign
    reason = second.runtimes[0].reason or ""
    assert "moved since it was read" in reason and "nothing was pushed" in reason
    assert git_head(git_remote, PROVIDED) == foreign[0]
    assert tags_now(registry_server, first, "moved") == expected(first, "moved")


def test_only_runtime_branches_are_pushed(
    registry_server: Any, matrix: Matrix, tmp_path: Path, git_remote: str
) -> None:
    import dataclasses

    from pipeline.branch import push_branch
    from pipeline.errors import BranchError, UsageError

    with pytest.raises(UsageError, match="unknown runtime 'feature'"):
        push_branch(matrix.runtime("feature"), tmp_path, git_remote, os.environ, epoch=0)
    # Even a runtime that runtimes.yaml calls "main" never overwrites the main branch.
    odd = dataclasses.replace(matrix.runtimes[0], id="main")
    odd_matrix = dataclasses.replace(matrix, runtimes=(*matrix.runtimes, odd), _by_id={})
    with pytest.raises(BranchError, match="refusing to push 'main'"):
        push_branch(odd_matrix.runtime("main"), tmp_path, git_remote, os.environ, epoch=0)
    assert git_head(git_remote, "main") is None
    assert git_head(git_remote, "feature") is None


def test_cli_reports_each_runtime_and_exits_non_zero_on_failure(
    registry_server: Any, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    work = tmp_path / "work"
    make_runtime(work, PROVIDED, "A", BOTH)
    make_runtime(work, PYTHON, "A", ("x86_64",))  # its arm64 cell never arrived
    report_file = tmp_path / "report.json"
    env = {
        **os.environ,
        "LAMBDA_IMAGES_REGISTRY_USER": registry_server.username,
        "LAMBDA_IMAGES_REGISTRY_PASSWORD": registry_server.password,
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
    }
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "lambda-images"), "--work", str(work),
            "publish", PROVIDED, PYTHON, "--registry", f"{registry_server.host}/cli",
            "--report", str(report_file),
        ],
        cwd=repo, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 8, proc.stderr
    lines = dict(line.split("\t", 1) for line in proc.stdout.splitlines())
    assert lines[PROVIDED].startswith("published\tsha256:")
    assert lines[PYTHON].startswith("failed\tpython3.11.debian12/arm64 has no snapshot")
    assert f"not published: {PYTHON}" in proc.stderr
    assert registry_server.password not in proc.stdout + proc.stderr
    summary = json.loads(report_file.read_text())
    assert summary["published"] == [PROVIDED] and list(summary["failed"]) == [PYTHON]


def test_bearer_token_registries_are_logged_into_through_their_realm(
    registry_server: Any, matrix: Matrix, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    gateway = FaultProxy(registry_server.host, bearer=True)
    try:
        make_runtime(tmp_path, PROVIDED, "A", BOTH)
        report = publish_at(
            matrix, [PROVIDED], work=tmp_path, registry=f"{gateway.host}/bearer",
            credentials=credentials(registry_server), retry=FAST_RETRY,
        )  # fmt: skip
    finally:
        gateway.close()
    assert report.ok, report.as_json()["failed"]
    assert tags_now(registry_server, report, "bearer") == expected(report, "bearer")
    assert gateway.token_queries == [
        "scope=repository%3Abearer%2Fprovided%3Apull%2Cpush&service=test-registry"
    ]
    captured = capfd.readouterr()
    for token in gateway.tokens:
        assert token not in captured.out + captured.err


def test_an_expired_token_mid_upload_is_renewed(
    registry_server: Any, matrix: Matrix, tmp_path: Path
) -> None:
    gateway = FaultProxy(registry_server.host, bearer=True)

    def expire_tokens(method: str, path: str) -> None:
        if method == "PUT" and "/blobs/uploads/" in path:
            gateway.on_request = None
            gateway.tokens.clear()

    gateway.on_request = expire_tokens
    try:
        make_runtime(tmp_path, PROVIDED, "A", BOTH)
        report = publish_at(
            matrix, [PROVIDED], work=tmp_path, registry=f"{gateway.host}/expiry",
            credentials=credentials(registry_server), retry=FAST_RETRY,
        )  # fmt: skip
    finally:
        gateway.close()
    assert report.ok, report.as_json()["failed"]
    assert len(gateway.token_queries) == 2
    assert tags_now(registry_server, report, "expiry") == expected(report, "expiry")


@pytest.mark.parametrize(
    ("status", "fix"),
    [(403, "grant push rights"), (404, "create it first"), (400, "request was rejected")],
)
def test_refusals_fail_fast_with_what_to_fix(
    registry_server: Any,
    matrix: Matrix,
    tmp_path: Path,
    proxy: FaultProxy,
    status: int,
    fix: str,
) -> None:
    make_runtime(tmp_path, PROVIDED, "A", BOTH)
    proxy.refuse = ("POST", "/blobs/uploads/", status)
    report = publish_at(
        matrix, [PROVIDED], work=tmp_path, registry=f"{proxy.host}/refused{status}",
        credentials=credentials(registry_server), retry=FAST_RETRY,
    )  # fmt: skip
    reason = report.runtimes[0].reason or ""
    assert f"HTTP {status}" in reason and fix in reason
    assert proxy.refused == 1  # not retried
    assert registry_server.tag_digest(f"refused{status}/provided", "debian12") is None
