"""Publishing when things go wrong on purpose, against the real registry and a bare git remote:
the shared OS layer mounted instead of uploaded again, one runtime's crash not stopping the
next, tags that moved before a failure reported, planted secrets found nowhere, and a publish
SIGKILLed at each step completed by the next run."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from cli_runner import SCRIPT
from publish_helpers import FAST_RETRY, credentials, git_head, make_runtime, publish_at
from servers import FaultProxy, RegistryServer

from pipeline.matrix import Matrix
from pipeline.oci.credentials import ecr_public_credentials
from pipeline.publish.tags import runtime_tags

# The config of every SBOM artifact: the empty JSON object (OCI 1.1).
EMPTY_CONFIG_DIGEST = "sha256:" + hashlib.sha256(b"{}").hexdigest()

PROVIDED = "provided.debian12"
PYTHON = "python3.11.debian12"
BOTH = ("x86_64", "arm64")
CLI = SCRIPT
REPO = Path(__file__).resolve().parents[2]
GUARD = 120.0  # seconds to wait for a process to reach a point; a hang fails the test
RELEASE = 1796029200  # the release time every publish here is dated by (2026-11-30 09:00 UTC)


@pytest.fixture(scope="module")
def logged_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry of its own that logs every request it answers."""
    server = RegistryServer(tmp_path_factory.mktemp("logged-registry"), access_log=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def proxy(registry_server: Any) -> Iterator[FaultProxy]:
    p = FaultProxy(registry_server.host)
    yield p
    p.close()


def cli_env(
    server: Any, tmp_path: Path, password: str | None = None, **extra: str
) -> dict[str, str]:
    return {
        **os.environ,
        "LAMBDA_IMAGES_REGISTRY_USER": server.username,
        "LAMBDA_IMAGES_REGISTRY_PASSWORD": server.password if password is None else password,
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
        "LAMBDA_IMAGES_RELEASE_TIME": str(RELEASE),
        **extra,
    }


def registry_tags(server: Any, repo: str, tags: list[str]) -> dict[str, str | None]:
    return {tag: server.tag_digest(repo, tag) for tag in tags}


def wanted_tags(matrix: Matrix, runtime_id: str) -> list[str]:
    return list(runtime_tags(matrix.runtime(runtime_id), RELEASE, latest=False))


# --- 5: the shared OS layer is uploaded once ------------------------------------------------------


def test_the_shared_os_layer_is_uploaded_once_and_mounted_into_the_other_family(
    logged_registry: RegistryServer, matrix: Matrix, tmp_path: Path
) -> None:
    # Both families' debian12 rows share their first (OS) layer per architecture.
    make_runtime(tmp_path, PROVIDED, "A", BOTH)
    make_runtime(tmp_path, PYTHON, "A", BOTH)
    report = publish_at(
        matrix, [PROVIDED, PYTHON], work=tmp_path, registry=f"{logged_registry.host}/mount",
        credentials=credentials(logged_registry), retry=FAST_RETRY, release=RELEASE,
    )  # fmt: skip
    assert report.ok, report.as_json()["failed"]
    logged = logged_registry.requests_logged()
    finished_uploads = [
        path.rpartition("digest=")[2].replace("%3A", ":")
        for method, path, status in logged
        if method == "PUT" and "/blobs/uploads/" in path and status == 201
    ]
    empty = "mount=" + EMPTY_CONFIG_DIGEST.replace(":", "%3A")
    mounts = [
        path
        for method, path, status in logged
        if method == "POST" and "mount=" in path and status == 201 and empty not in path
    ]
    # Every blob reached the registry exactly once: the OS layer of each architecture went to
    # the first family's repository and was mounted into the second one's (and so was the
    # empty config of the SBOM artifacts, counted apart).
    assert len(finished_uploads) == len(set(finished_uploads))
    assert len(mounts) == 2, mounts
    assert all("from=mount%2Fprovided" in path for path in mounts)
    assert all(path.startswith("/v2/mount/python/blobs/uploads/") for path in mounts)
    python = report.runtimes[1]
    assert python.blobs_mounted == 3 and python.bytes_mounted > 0  # 2 layers, the empty config
    assert report.as_json()["bytes_mounted"] == python.bytes_mounted
    mounted = {p.partition("mount=")[2].partition("&")[0].replace("%3A", ":") for p in mounts}
    assert mounted <= set(finished_uploads)  # what was mounted had been uploaded once

    # Publishing again sends nothing.
    again = publish_at(
        matrix, [PROVIDED, PYTHON], work=tmp_path, registry=f"{logged_registry.host}/mount",
        credentials=credentials(logged_registry), retry=FAST_RETRY, release=RELEASE,
    )  # fmt: skip
    assert [r.status for r in again.runtimes] == ["unchanged", "unchanged"]
    after = logged_registry.requests_logged()[len(logged) :]
    assert not [m for m, p, _ in after if m in ("POST", "PUT")]


# --- per-runtime isolation and partial progress ---------------------------------------------------


def test_a_runtime_that_crashes_does_not_stop_the_next_one(
    registry_server: Any, matrix: Matrix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.orchestrate import release

    work = tmp_path / "work"
    make_runtime(work, PROVIDED, "A", BOTH)
    make_runtime(work, PYTHON, "A", BOTH)
    # A bug deep inside (not one of our errors) while the first runtime's documents are made.
    prepare = release.prepare_images

    def crashing(work_folder: Path, snaps: Any, epoch: int) -> Any:
        if snaps[0].runtime == PROVIDED:
            raise ZeroDivisionError("a bug")
        return prepare(work_folder, snaps, epoch)

    monkeypatch.setattr(release, "prepare_images", crashing)
    report_file = tmp_path / "report.json"
    report = publish_at(
        matrix, [PROVIDED, PYTHON], work=work, registry=f"{registry_server.host}/isolated",
        credentials=credentials(registry_server), retry=FAST_RETRY, release=RELEASE,
        report_path=report_file,
    )  # fmt: skip
    assert [r.status for r in report.runtimes] == ["failed", "published"]
    assert report.runtimes[0].reason == (
        "internal error (ZeroDivisionError); run again with LAMBDA_IMAGES_DEBUG=1"
    )
    written = json.loads(report_file.read_text())
    assert written["published"] == [PYTHON] and list(written["failed"]) == [PROVIDED]
    tags = wanted_tags(matrix, PYTHON)
    assert None not in registry_tags(registry_server, "isolated/python", tags).values()
    assert set(registry_tags(registry_server, "isolated/provided", tags).values()) == {None}


def test_tags_moved_before_a_failure_are_in_the_report(
    registry_server: Any, matrix: Matrix, tmp_path: Path, proxy: FaultProxy
) -> None:
    make_runtime(tmp_path, PROVIDED, "A", BOTH)
    tags = wanted_tags(matrix, PROVIDED)
    proxy.refuse = ("PUT", f"/manifests/{tags[1]}", 400)  # the second tag cannot be written
    report_file = tmp_path / "report.json"
    report = publish_at(
        matrix, [PROVIDED], work=tmp_path, registry=f"{proxy.host}/partial",
        credentials=credentials(registry_server), retry=FAST_RETRY, release=RELEASE,
        report_path=report_file,
    )  # fmt: skip
    result = report.runtimes[0]
    assert result.status == "failed" and "HTTP 400" in (result.reason or "")
    assert result.tags_moved == [tags[0]]
    assert json.loads(report_file.read_text())["runtimes"][0]["tags_moved"] == [tags[0]]
    now = registry_tags(registry_server, "partial/provided", tags)
    assert [tag for tag, digest in now.items() if digest] == [tags[0]]


# --- 3: planted secrets appear nowhere ----------------------------------------------------------


class ArgvSampler:
    """Reads every process's argument list (/proc/*/cmdline) over and over while it runs."""

    def __init__(self) -> None:
        self.samples = 0
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    raw = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if raw:
                    self.seen.add(raw.replace(b"\0", b" ").decode(errors="replace"))
            self.samples += 1

    def __enter__(self) -> ArgvSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_planted_secrets_reach_no_output_report_record_or_process_list(
    registry_server: Any,
    matrix: Matrix,
    tmp_path: Path,
    git_remote: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = registry_server.password  # the registry password, as the environment gives it
    git_token = base64.b32encode(os.urandom(15)).decode()
    aws_password = registry_server.users["AWS"]
    ecr_token = base64.b64encode(f"AWS:{aws_password}".encode()).decode()
    secrets = [password, git_token, aws_password, ecr_token]

    work = tmp_path / "work"
    make_runtime(work, PROVIDED, "A", BOTH)
    make_runtime(work, PYTHON, "A", ("x86_64",))  # its arm64 cell is missing: a failure path
    outputs: list[str] = []

    def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [CLI, "--work", str(work), "publish", *args], cwd=REPO, env=env,
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        outputs.extend([proc.stdout, proc.stderr])
        return proc

    refusing = FaultProxy(registry_server.host)
    refusing.refuse = ("PUT", "/manifests/", 403)
    try:
        with ArgvSampler() as sampler:
            env = cli_env(registry_server, tmp_path, GITHUB_ACTIONS="true")
            ok = run(
                PROVIDED, "--registry", f"{registry_server.host}/secret",
                "--git-remote", git_remote, "--report", str(tmp_path / "ok.json"), env=env,
            )  # fmt: skip
            assert ok.returncode == 0, ok.stderr
            failed = run(
                PROVIDED, PYTHON, "--registry", f"{refusing.host}/secret-failed",
                "--git-remote", git_remote, "--report", str(tmp_path / "failed.json"), env=env,
            )  # fmt: skip
            assert failed.returncode == 8, failed.stderr
            token_url = f"https://x-access-token:{git_token}@127.0.0.1:9/remote.git"
            refused = run(PROVIDED, "--registry", f"{registry_server.host}/secret",
                          "--git-remote", token_url, env=env)  # fmt: skip
            assert refused.returncode == 2
            assert len(refused.stderr.strip().splitlines()) == 1
            assert "https://***@127.0.0.1:9/remote.git" in refused.stderr
            crlf = run(
                PROVIDED, "--registry", f"{registry_server.host}/secret-crlf",
                "--report", str(tmp_path / "crlf.json"),
                env=cli_env(registry_server, tmp_path, password=password + "\r\nX-Evil: 1"),
            )  # fmt: skip
            assert crlf.returncode == 8 and "line break" in crlf.stderr
            assert "Traceback" not in crlf.stderr

            # The ECR Public token, from a stubbed ecr-public client, on both paths.
            client = boto3.client(
                "ecr-public", region_name="us-east-1",
                aws_access_key_id="testing", aws_secret_access_key="testing",
            )  # fmt: skip
            with Stubber(client) as stub:
                expires = dt.datetime(2030, 1, 1)
                data = {"authorizationToken": ecr_token, "expiresAt": expires}
                stub.add_response("get_authorization_token", {"authorizationData": data}, {})
                creds = ecr_public_credentials(client)
            ecr_ok = publish_at(
                matrix, [PROVIDED], work=work, registry=f"{registry_server.host}/secret-ecr",
                credentials=creds, retry=FAST_RETRY, release=RELEASE, git_remote=git_remote,
                report_path=tmp_path / "ecr-ok.json",
            )  # fmt: skip
            ecr_failed = publish_at(
                matrix, [PROVIDED, PYTHON], work=work, registry=f"{refusing.host}/secret-ecr2",
                credentials=creds, retry=FAST_RETRY, release=RELEASE,
                report_path=tmp_path / "ecr-failed.json",
            )  # fmt: skip
    finally:
        refusing.close()
    assert ecr_ok.ok and not ecr_failed.ok
    # Credentials typed into --registry are refused (outside the sampling: the test's own
    # command line holds them).
    in_registry = run(
        PROVIDED, "--registry", f"tester:{password}@{registry_server.host}/secret",
        env=cli_env(registry_server, tmp_path),
    )  # fmt: skip
    assert in_registry.returncode == 2 and "Traceback" not in in_registry.stderr
    assert "credentials do not belong in the registry name" in in_registry.stderr
    assert sampler.samples > 10
    assert any(" publish " in argv and CLI in argv for argv in sampler.seen)
    assert any(argv.startswith("git ") and " push " in argv for argv in sampler.seen)
    captured = capfd.readouterr()
    # The test's own lambda-images command lines hold the token URL it typed; every other
    # process (git, git-lfs, their children) must not, and none holds the other secrets.
    texts = [*outputs, captured.out, captured.err, caplog.text]
    texts += [argv for argv in sampler.seen if CLI not in argv]
    texts += [argv.replace(git_token, "") for argv in sampler.seen if CLI in argv]
    texts += [repr(creds), repr(ecr_ok), repr(ecr_failed)]
    texts += [json.dumps(ecr_ok.as_json()), json.dumps(ecr_failed.as_json())]
    files = [p for p in tmp_path.rglob("*") if p.is_file()] + [
        registry_server.root / "registry.log"
    ]
    texts += [p.read_bytes().decode("latin-1") for p in files]
    for secret in secrets:
        leaks = [text[:200] for text in texts if secret in text]
        assert not leaks, f"a planted secret was found in {len(leaks)} place(s)"


# --- 4: SIGKILL at each step; the next run completes the release --------------------------------

HELD_REQUEST: dict[str, Callable[[str, str], bool]] = {
    "blobs": lambda method, path: method == "PUT" and "/blobs/uploads/" in path,
    "manifests": lambda method, path: method == "PUT" and "/manifests/sha256:" in path,
    "tags": lambda method, path: (
        method == "PUT" and "/manifests/" in path and "/manifests/sha256:" not in path
    ),
}


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + GUARD
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"publish ended ({proc.returncode}) before the step was reached")
        if time.monotonic() > deadline:
            raise AssertionError("the step was not reached")
        time.sleep(0.05)


@pytest.mark.parametrize("step", ["blobs", "manifests", "branch", "tags"])
def test_a_publish_killed_at_each_step_is_completed_by_the_next_run(
    registry_server: Any,
    matrix: Matrix,
    tmp_path: Path,
    git_remote: str,
    proxy: FaultProxy,
    step: str,
) -> None:
    work = tmp_path / "work"
    make_runtime(work, PROVIDED, "A", BOTH)
    namespace = f"killed-{step}"
    reached, release = threading.Event(), threading.Event()
    armed = [True]

    def hold(method: str, path: str) -> None:
        if step in HELD_REQUEST and armed[0] and HELD_REQUEST[step](method, path):
            armed[0] = False
            reached.set()
            release.wait(GUARD)
            raise ConnectionAbortedError("the publishing process is gone")

    proxy.on_request = hold
    hook_armed, hook_reached = tmp_path / "hook-armed", tmp_path / "hook-reached"
    if step == "branch":
        hook = Path(git_remote.removeprefix("file://")) / "hooks" / "pre-receive"
        hook.write_text(
            "#!/bin/sh\n"
            f'if [ -e "{hook_armed}" ]; then rm -f "{hook_armed}"; touch "{hook_reached}"; '
            "sleep 600; fi\nexit 0\n"
        )
        hook.chmod(0o755)
        hook_armed.touch()
    args = [
        CLI, "--work", str(work), "publish", PROVIDED, "--registry", f"{proxy.host}/{namespace}",
        "--git-remote", git_remote, "--report", str(tmp_path / "report.json"),
    ]  # fmt: skip
    env = cli_env(registry_server, tmp_path)
    first = subprocess.Popen(
        args, cwd=REPO, env=env, text=True, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(hook_reached.exists if step == "branch" else reached.is_set, first)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the publisher and its git children
        first.wait(GUARD)
        release.set()
    tags = wanted_tags(matrix, PROVIDED)
    repo = f"{namespace}/provided"
    # The branch moves last: killed at any step, it does not say "published". Killed before the
    # tags, the release is not half visible; killed at the branch, the registry holds it whole.
    now = registry_tags(registry_server, repo, tags)
    if step == "branch":
        assert None not in now.values()
    else:
        assert set(now.values()) == {None}
    assert git_head(git_remote, PROVIDED) is None

    second = subprocess.run(
        [*args[:-2], "--report", str(tmp_path / "again.json")], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["published"] == [PROVIDED]
    expected = again["runtimes"][0]["tags"]
    assert registry_tags(registry_server, repo, tags) == {t: expected[t] for t in tags}
    assert git_head(git_remote, PROVIDED) == again["runtimes"][0]["branch"]["commit"]
