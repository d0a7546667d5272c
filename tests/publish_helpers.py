"""Small snapshots written straight into a work directory, and git helpers, for publish tests
that need a registry and a remote but not an image build."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

from pipeline.git import check_remote
from pipeline.matrix import ARCHES, Matrix
from pipeline.oci.credentials import Credentials
from pipeline.oci.registry import Registry, RegistryRef
from pipeline.oci.transport import RetryPolicy
from pipeline.publish.report import PublishReport
from pipeline.records import ArchSnapshot, ImageConfig, Layer
from pipeline.settings import Settings
from pipeline.snapshot import compress_xz
from pipeline.workdir import WorkDir

# Short waits so that fault tests finish quickly; many attempts so that 30% faults pass.
FAST_RETRY = RetryPolicy(attempts=12, initial=0.02, cap=0.2, timeout=30)
LABELS = {
    "org.opencontainers.image.created": "2024-01-01T00:00:00Z",
    "org.opencontainers.image.source": "https://example.invalid/lambda-base-images",
    "org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
}
LFS_CLONE = [
    "-c",
    "filter.lfs.smudge=git-lfs smudge -- %f",
    "-c",
    "filter.lfs.process=git-lfs filter-process",
    "-c",
    "filter.lfs.required=true",
]


def layer_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed layer tarball holding ``files`` (path → bytes), fixed mtime and mode."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(files[name]), 1704067200, 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return out.getvalue()


def make_snapshot(
    work: Path, runtime_id: str, arch: str, release: str, *, version: str = "test"
) -> ArchSnapshot:
    """A two-layer snapshot: a base layer per arch and a layer that changes with ``release``."""
    cell = WorkDir(work).cell(runtime_id, arch)
    folder, layers_dir = cell.folder, cell.layers
    layers_dir.mkdir(parents=True, exist_ok=True)
    contents = [
        {"etc/os-release": f"ID=test\nARCH={arch}\n".encode()},
        {
            "var/runtime/bootstrap": f"#!/bin/sh\n# {runtime_id} {release}\n".encode(),
            "var/task/.keep": b"",
        },
    ]
    layers = []
    for i, files in enumerate(contents):
        raw = layer_tar(files)
        tar = folder / f"layer{i}.tar"
        tar.write_bytes(raw)
        sha, compressed, _ = compress_xz(tar, layers_dir)
        tar.unlink()
        layers.append(
            Layer(
                file=f"{sha}.tar.xz",
                sha256=sha,
                diff_id="sha256:" + hashlib.sha256(raw).hexdigest(),
                size=len(raw),
                compressed_size=compressed,
            )
        )
    snap = ArchSnapshot(
        runtime=runtime_id,
        arch=arch,
        docker_arch=ARCHES[arch].docker,
        image_id="sha256:" + hashlib.sha256(f"{runtime_id}{arch}{release}".encode()).hexdigest(),
        layers=layers,
        config=ImageConfig(
            env=["PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin"],
            entrypoint=["/lambda-entrypoint.sh"],
            cmd=None,
            working_dir="/var/task",
            user="",
            labels={**LABELS, "org.opencontainers.image.version": version},
        ),
    )
    snap.write(cell)
    return snap


def make_runtime(work: Path, runtime_id: str, release: str, arches: tuple[str, ...]) -> None:
    for arch in arches:
        make_snapshot(work, runtime_id, arch, release)


def credentials(server: object) -> Credentials:
    return Credentials(
        username=server.username,  # type: ignore[attr-defined]
        password=server.password,  # type: ignore[attr-defined]
        source="the test",
    )


def git_head(remote: str, branch: str) -> str | None:
    out = subprocess.run(
        ["git", "ls-remote", "--heads", remote, f"refs/heads/{branch}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split("\t", 1)[0] if out.strip() else None


def push_foreign_commit(remote: str, branch: str, scratch: Path) -> str:
    """Someone else's push: a different commit on ``branch``."""
    repo = scratch / "foreign"
    subprocess.run(["git", "init", "-q", "-b", branch, str(repo)], check=True)
    (repo / "README.md").write_text("pushed by someone else\n")
    git = ["git", "-C", str(repo), "-c", "user.name=other", "-c", "user.email=o@example.invalid"]
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "other"], check=True)
    subprocess.run([*git, "push", "-q", "--force", remote, f"HEAD:refs/heads/{branch}"], check=True)
    return git_head(remote, branch) or ""


def publish_at(
    matrix: Matrix,
    runtime_ids: list[str],
    *,
    work: Path,
    registry: str,
    credentials: Credentials | None,
    labels: dict[str, str] | None = None,
    epoch: int | None = None,
    release: int | None = None,
    retry: RetryPolicy | None = None,
    git_remote: str | None = None,
    report_path: Path | None = None,
    mirrors: list[tuple[str, Credentials | None]] | None = None,
) -> PublishReport:
    """The conductor's publish from the work folder ``work``, with settings from the environment
    and the source/revision labels given, the registries reached with ``credentials`` (a mirror
    with its own) and ``retry``; ``release`` fakes the clock that dates the release."""
    from pipeline.orchestrate import PublishRequest, Run, publish

    settings = Settings.from_environ()
    labels = labels or {}
    settings = dataclasses.replace(
        settings,
        work=work,
        matrix=matrix.path,
        source=labels.get("org.opencontainers.image.source", settings.source),
        revision=labels.get("org.opencontainers.image.revision", settings.revision),
        epoch=settings.epoch if epoch is None else epoch,
        release=settings.release if release is None else release,
    )
    primary = RegistryRef.parse(registry)
    copies = [(RegistryRef.parse(where), creds) for where, creds in mirrors or []]
    by_ref = {primary: credentials, **dict(copies)}

    def connect(ref: RegistryRef) -> Registry:
        return Registry(ref.host, scheme=ref.scheme, credentials=by_ref[ref], retry=retry)

    run = Run(
        settings=settings, matrix=matrix, work=WorkDir(work),
        connect_registry=connect,
    )  # fmt: skip
    if git_remote is not None:
        check_remote(git_remote)
    request = PublishRequest(
        runtimes=tuple(matrix.runtime(r) for r in runtime_ids) or matrix.runtimes,
        registry=primary, mirrors=tuple(ref for ref, _ in copies), remote=git_remote,
        report=report_path,
    )  # fmt: skip
    return publish(run, request)


def bare_remote(folder: Path) -> str:
    """A new bare git repository in ``folder``/remote.git, as a file:// URL."""
    subprocess.run(["git", "init", "-q", "--bare", str(folder / "remote.git")], check=True)
    return f"file://{folder / 'remote.git'}"
