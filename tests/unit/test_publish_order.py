"""The order of a publish's effects, without an engine: the registry first, the branch last.

The conductor (orchestrate/release.py) is driven as ``lambda-images publish`` drives it, from a
work folder holding small snapshots, against a stand-in registry written here (an in-memory OCI
distribution server on 127.0.0.1 that records when each write arrives) and a local bare git
remote whose pre-receive hook records when the branch is written. A tag that the registry
refuses stops the runtime with its branch where it was."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from publish_helpers import bare_remote, git_head, make_runtime

from pipeline.lock import Lock
from pipeline.matrix import Matrix
from pipeline.oci import registry as oci
from pipeline.oci.transport import RetryPolicy
from pipeline.orchestrate import PublishRequest, Run, publish
from pipeline.publish.report import PublishReport
from pipeline.settings import Settings
from pipeline.workdir import WorkDir

RUNTIME = "provided.debian12"
ONE_TRY = RetryPolicy(attempts=1, initial=0.01, cap=0.01, timeout=10)
MANIFEST = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")
BLOB = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")


class Registry:
    """Blobs, manifests and tags in memory; ``writes`` holds (time_ns, method, path) of every
    request that changes something. ``refuse_tags``: a PUT of a release tag answers 500."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[bytes, str]] = {}  # digest → (body, media type)
        self.tags: dict[tuple[str, str], str] = {}  # (repo, tag) → digest
        self.writes: list[tuple[int, str, str]] = []
        self.refuse_tags = False
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, out = registry.answer(self.command, self.path, body, self.headers)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(
        self, method: str, path: str, body: bytes, headers: object
    ) -> tuple[int, dict[str, str], bytes]:
        url, _, query = path.partition("?")
        if method in ("PUT", "POST", "PATCH", "DELETE"):
            self.writes.append((time.time_ns(), method, url))
        if url == "/v2/":
            return 200, {}, b"{}"
        if method == "POST" and url.endswith("/blobs/uploads/"):
            return 202, {"Location": f"/upload/{uuid.uuid4().hex}"}, b""
        if method == "PUT" and url.startswith("/upload/"):
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            assert query == f"digest={digest.replace(':', '%3A')}"
            self.blobs[digest] = body
            return 201, {"Docker-Content-Digest": digest}, b""
        if match := BLOB.match(url):
            data = self.blobs.get(match["digest"])
            if data is None:
                return 404, {}, b""
            return 200, {"Docker-Content-Digest": match["digest"]}, data
        if match := MANIFEST.match(url):
            return self.manifest(method, match["repo"], match["ref"], body, headers)
        if url.endswith("/tags/list"):
            repo = url.removeprefix("/v2/").removesuffix("/tags/list")
            tags = sorted(tag for r, tag in self.tags if r == repo)
            return (200, {}, json.dumps({"tags": tags}).encode()) if tags else (404, {}, b"")
        return 404, {}, b"{}"  # no referrers API: SBOMs go under the referrers tag

    def manifest(
        self, method: str, repo: str, ref: str, body: bytes, headers: object
    ) -> tuple[int, dict[str, str], bytes]:
        if method == "PUT":
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            if not ref.startswith("sha256"):  # a tag (the referrers tag is sha256-…)
                if self.refuse_tags:
                    return 500, {}, b'{"errors": [{"code": "UNKNOWN"}]}'
                self.tags[(repo, ref)] = digest
            self.manifests[digest] = (body, headers.get("Content-Type", ""))  # type: ignore[attr-defined]
            return 201, {"Docker-Content-Digest": digest}, b""
        digest = ref if ref.startswith("sha256:") else self.tags.get((repo, ref), "")
        if digest not in self.manifests:
            return 404, {}, b""
        content, media_type = self.manifests[digest]
        return 200, {"Docker-Content-Digest": digest, "Content-Type": media_type}, content

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registry() -> Iterator[Registry]:
    server = Registry()
    yield server
    server.close()


def publish_release(
    matrix: Matrix, work: Path, registry: Registry, remote: str, release: int
) -> PublishReport:
    """``lambda-images publish RUNTIME --registry HOST/lambda --git-remote REMOTE``, released at
    ``release`` (seconds), each request tried once."""
    settings = Settings.from_environ()
    settings = dataclasses.replace(settings, work=work, matrix=matrix.path, release=release)
    run = Run(
        settings=settings, matrix=matrix, work=WorkDir(work), _lock=checked_in_lock(matrix.path),
        connect_registry=lambda ref: oci.Registry(ref.host, scheme=ref.scheme, retry=ONE_TRY),
    )  # fmt: skip
    ref = oci.RegistryRef.parse(f"{registry.host}/lambda")
    return publish(
        run, PublishRequest(runtimes=(matrix.runtime(RUNTIME),), registry=ref, remote=remote)
    )


@functools.cache
def checked_in_lock(path: Path) -> Lock:
    """The lock file, read once for the module (reading it is most of a publish here)."""
    return Lock.for_matrix(path)


def remote_with_receive_log(folder: Path) -> tuple[str, Path]:
    """A bare remote whose pre-receive hook appends the time (ns) each push writes to it."""
    remote = bare_remote(folder)
    received = folder / "received"
    hook = folder / "remote.git" / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\ndate +%s%N >> {received}\ncat > /dev/null\n")
    hook.chmod(0o755)
    return remote, received


def test_the_registry_holds_the_release_before_the_branch_moves(
    matrix: Matrix, registry: Registry, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    remote, received = remote_with_receive_log(tmp_path)
    arches = matrix.runtime(RUNTIME).architectures
    make_runtime(work, RUNTIME, "one", arches)

    report = publish_release(matrix, work, registry, remote, 1723208400)
    assert report.ok, report.as_json()["failed"]
    published = git_head(remote, RUNTIME)
    assert published is not None
    tag = matrix.runtime(RUNTIME).tag
    assert registry.tags[("lambda/provided", tag)] == report.runtimes[0].index
    (pushed,) = map(int, received.read_text().split())
    assert max(t for t, _, _ in registry.writes) < pushed  # every registry write came first
    lfs = list((tmp_path / "remote.git" / "lfs" / "objects").rglob("*"))
    assert min(p.stat().st_mtime_ns for p in lfs if p.is_file()) > registry.writes[-1][0]

    # The next release: its blobs and manifests go up, then the registry refuses a tag.
    make_runtime(work, RUNTIME, "two", arches)
    registry.refuse_tags = True
    before = dict(registry.tags)
    failed = publish_release(matrix, work, registry, remote, 1723208400 + 3600)
    (result,) = failed.runtimes
    assert (result.status, result.tags_moved) == ("failed", [])
    assert result.reason is not None and "PUT manifest debian12.2024.08.09.14" in result.reason
    assert result.index in registry.manifests  # the new index went up, by digest
    assert registry.tags == before  # no tag moved
    assert git_head(remote, RUNTIME) == published  # the branch did not move
    assert len(received.read_text().split()) == 1  # nor was a push tried
