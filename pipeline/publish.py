"""Publish: runtimes from the work directory to a registry and to their git branches.

The published image *is* the snapshot: its layers are the branch tarballs, recompressed with
gzip (Docker cannot pull xz layers) deterministically — mtime 0, no file name, one level — so
the config's diff IDs are the snapshot's and the same snapshot always gives the same digests.
Gzip results are cached in the work folder's ``registry-blobs/`` by diff ID.

Per runtime, in this order, and only when every architecture it declares has a snapshot (and
no ``test.json`` whose ``ok`` is not true):

1. layer and config blobs (HEAD first; only missing ones are uploaded);
2. the per-architecture manifests and the index, by digest (nothing visible moves yet);
3. the runtime's git branch (one orphan commit, ``--force-with-lease`` against the head read
   when this runtime's publish began), so a concurrent publisher stops us before any tag moves;
4. the tags: ``<tag>-<arch>``, ``<tag>.<YYYY.MM.DD.HH>-<arch>``, ``<tag>`` and
   ``<tag>.<YYYY.MM.DD.HH>`` (the index), and ``latest`` for the family's newest supported
   runtime. A tag already at the right digest is not rewritten.

A failing runtime is reported and the next one goes on. Nothing here talks to the engine.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import json
import lzma
import re
import tempfile
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from . import log
from .branch import BranchResult, push_branch, remote_head
from .conformance import Report
from .digests import CHUNK, HashingWriter, sha256_bytes
from .epoch import iso8601
from .errors import LambdaImagesError, PublishError, UsageError
from .git import check_remote
from .matrix import ARCHES, Matrix, Runtime
from .oci.registry import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Credentials,
    Registry,
    RegistryRef,
    RetryPolicy,
)
from .settings import Settings
from .snapshot import ArchSnapshot, assemble_branch
from .workdir import TEST, WorkDir, read_json, write_json

GZIP_LEVEL: Final = 6


@dataclass(frozen=True, kw_only=True)
class Blob:
    digest: str
    size: int
    path: Path


@dataclass(frozen=True, kw_only=True)
class Document:
    """A manifest or index: exact bytes, media type, digest."""

    body: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return sha256_bytes(self.body)


@dataclass(frozen=True, kw_only=True)
class ArchImage:
    arch: str
    layers: list[Blob]
    config: bytes
    manifest: Document


@dataclass(kw_only=True)
class RuntimeReport:
    runtime: str
    repository: str
    status: str = "failed"  # published | unchanged | failed
    reason: str | None = None
    index: str | None = None
    manifests: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    tags_moved: list[str] = field(default_factory=list)
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    blobs_mounted: int = 0
    bytes_mounted: int = 0  # bytes a cross-repository mount saved uploading
    branch: dict[str, Any] | None = None


@dataclass(kw_only=True)
class PublishReport:
    registry: str
    git_remote: str | None
    runtimes: list[RuntimeReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status != "failed" for r in self.runtimes)

    def as_json(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "git_remote": self.git_remote,
            "ok": self.ok,
            "published": [r.runtime for r in self.runtimes if r.status == "published"],
            "unchanged": [r.runtime for r in self.runtimes if r.status == "unchanged"],
            "failed": {r.runtime: r.reason for r in self.runtimes if r.status == "failed"},
            "bytes_uploaded": sum(r.bytes_uploaded for r in self.runtimes),
            "bytes_mounted": sum(r.bytes_mounted for r in self.runtimes),
            "runtimes": [dataclasses.asdict(r) for r in self.runtimes],
        }

    def write(self, path: Path) -> None:
        write_json(path, self.as_json())

    def show(self) -> None:
        """One line per runtime on stdout: runtime, status, index digest or reason."""
        for r in self.runtimes:
            print(f"{r.runtime}\t{r.status}\t{r.index or r.reason}", flush=True)


# --- pure: tags, documents ---------------------------------------------------------------------


def dated_stamp(epoch: int) -> str:
    """``YYYY.MM.DD.HH`` of SOURCE_DATE_EPOCH: a rerun with the same inputs mints no new tag."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y.%m.%d.%H")


def version_key(runtime: Runtime) -> tuple[tuple[int, int | str], ...]:
    """Natural order of versions: 3.9 < 3.10 < 3.12; digits compare as numbers."""
    parts = re.findall(r"\d+|[^\d.]+", runtime.version)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def latest_runtimes(matrix: Matrix, today: dt.date) -> dict[str, str]:
    """Family id → the runtime ``latest`` belongs to: the highest version not deprecated
    (ties go to the later entry of runtimes.yaml). Chosen from the whole matrix, so publishing
    only an older runtime never moves ``latest`` backwards."""
    best: dict[str, tuple[Any, int, Runtime]] = {}
    for position, rt in enumerate(matrix.runtimes):
        if rt.state(today) == "deprecated":
            continue
        key = (version_key(rt), position, rt)
        if rt.family.id not in best or key[:2] > best[rt.family.id][:2]:
            best[rt.family.id] = key
    return {family: entry[2].id for family, entry in best.items()}


def runtime_tags(runtime: Runtime, epoch: int, *, latest: bool) -> dict[str, str | None]:
    """Tag → arch it names (None: the index), in the order they are written."""
    stamp = dated_stamp(epoch)
    tags: dict[str, str | None] = {}
    for arch in runtime.architectures:
        tags[f"{runtime.tag}-{arch}"] = arch
        tags[f"{runtime.tag}.{stamp}-{arch}"] = arch
    tags[runtime.tag] = None
    tags[f"{runtime.tag}.{stamp}"] = None
    if latest:
        tags["latest"] = None
    return tags


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def image_config(snap: ArchSnapshot, created: str) -> bytes:
    c = snap.config
    config: dict[str, Any] = {"Env": c.env, "Labels": c.labels}
    if c.entrypoint:
        config["Entrypoint"] = c.entrypoint
    if c.cmd:
        config["Cmd"] = c.cmd
    if c.working_dir:
        config["WorkingDir"] = c.working_dir
    if c.user:
        config["User"] = c.user
    return canonical(
        {
            "architecture": snap.docker_arch,
            "os": "linux",
            "created": created,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in snap.layers]},
            "history": [
                {"created": created, "created_by": f"ADD {layer.file} /"} for layer in snap.layers
            ],
        }
    )


def image_manifest(config: bytes, layers: Sequence[Blob], annotations: dict[str, str]) -> Document:
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": sha256_bytes(config),
            "size": len(config),
        },
        "layers": [
            {"mediaType": OCI_LAYER_GZIP, "digest": b.digest, "size": b.size} for b in layers
        ],
        "annotations": annotations,
    }
    return Document(body=canonical(body), media_type=OCI_MANIFEST)


def image_index(images: Sequence[ArchImage], annotations: dict[str, str]) -> Document:
    manifests = []
    for image in images:
        platform = {"architecture": ARCHES[image.arch].docker, "os": "linux"}
        if image.arch == "arm64":
            platform["variant"] = "v8"
        manifests.append(
            {
                "mediaType": image.manifest.media_type,
                "digest": image.manifest.digest,
                "size": len(image.manifest.body),
                "platform": platform,
            }
        )
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
        "annotations": annotations,
    }
    return Document(body=canonical(body), media_type=OCI_INDEX)


def oci_annotations(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in sorted(labels.items()) if k.startswith("org.opencontainers.image.")}


# --- the work directory ------------------------------------------------------------------------


def read_cells(runtime: Runtime, work: WorkDir) -> list[ArchSnapshot]:
    """Every architecture's snapshot, or a PublishError naming the first cell that is not ready."""
    snaps = []
    for arch in runtime.architectures:
        cell = work.cell(runtime.id, arch)
        if cell.record(TEST).exists():
            report = Report.read(cell)
            if report is None or not report.ok:
                raise PublishError(f"{cell.name} did not pass its tests ({cell.record(TEST)})")
        snap = ArchSnapshot.read(cell)
        if snap is None:
            raise PublishError(f"{cell.name} has no snapshot ({cell.folder}); build it")
        if snap.runtime != runtime.id or snap.arch != arch:
            msg = f"{cell.folder}: snapshot.json is for {snap.runtime}/{snap.arch}"
            raise PublishError(msg)
        snaps.append(snap)
    return snaps


def with_labels(snap: ArchSnapshot, extra: dict[str, str]) -> ArchSnapshot:
    """Add labels the snapshot lacks (source, revision known only to the publishing job)."""
    labels = {**{k: v for k, v in extra.items() if v}, **snap.config.labels}
    config = dataclasses.replace(snap.config, labels=dict(sorted(labels.items())))
    return dataclasses.replace(snap, config=config)


def gzip_layer(work: WorkDir, snap: ArchSnapshot, index: int) -> Blob:
    """The registry blob of one layer: its ``.tar.xz`` decompressed, checked against the
    snapshot's sha256 and diff ID, and gzipped reproducibly; cached by diff ID."""
    layer = snap.layers[index]
    cache = work.registry_blobs
    cache.mkdir(parents=True, exist_ok=True)
    key = layer.diff_id.removeprefix("sha256:")
    record = cache / f"{key}.json"
    known = read_json(record, lambda data: (str(data["digest"]), int(data["size"])))
    if known is not None:
        path = cache / f"{known[0].removeprefix('sha256:')}.tar.gz"
        if path.exists() and path.stat().st_size == known[1]:
            return Blob(digest=known[0], size=known[1], path=path)
    source = work.cell(snap.runtime, snap.arch).layers / layer.file
    packed, plain = hashlib.sha256(), hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=".gz-", dir=cache)
    tmp = Path(tmp_name)
    try:
        with open(fd, "wb") as raw, source.open("rb") as inp:
            hashing = HashingWriter(raw)
            unxz = lzma.LZMADecompressor()
            with gzip.GzipFile(
                filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=hashing, mtime=0
            ) as gz:
                while chunk := inp.read(CHUNK):
                    packed.update(chunk)
                    data = unxz.decompress(chunk)
                    plain.update(data)
                    gz.write(data)
        if packed.hexdigest() != layer.sha256 or "sha256:" + plain.hexdigest() != layer.diff_id:
            msg = (
                f"{source}: does not match snapshot.json (sha256 or diff ID differ); the work "
                "directory is damaged: run the snapshot stage again"
            )
            raise PublishError(msg)
        digest = "sha256:" + hashing.hexdigest
        path = cache / f"{hashing.hexdigest}.tar.gz"
        tmp.replace(path)
        size = path.stat().st_size
        write_json(record, {"digest": digest, "size": size})
        return Blob(digest=digest, size=size, path=path)
    except FileNotFoundError:
        raise PublishError(f"{source}: layer missing from the work directory") from None
    except lzma.LZMAError:
        raise PublishError(f"{source}: not a valid .tar.xz; run the snapshot stage again") from None
    finally:
        tmp.unlink(missing_ok=True)


def prepare_images(
    work: WorkDir, snaps: Sequence[ArchSnapshot], epoch: int
) -> tuple[list[ArchImage], Document]:
    created = iso8601(epoch)
    images = []
    for snap in snaps:
        layers = [gzip_layer(work, snap, i) for i in range(len(snap.layers))]
        config = image_config(snap, created)
        manifest = image_manifest(config, layers, oci_annotations(snap.config.labels))
        images.append(ArchImage(arch=snap.arch, layers=layers, config=config, manifest=manifest))
    index = image_index(images, oci_annotations(snaps[0].config.labels))
    return images, index


# --- per runtime -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Options:
    ref: RegistryRef
    work: WorkDir
    git_remote: str | None = None
    epoch: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    today: dt.date


def publish_runtime(
    matrix: Matrix,
    runtime: Runtime,
    registry: Registry,
    opts: Options,
    latest: bool,
    report: RuntimeReport,
) -> None:
    """Publish one runtime, recording progress in ``report`` as it goes (so that a failure
    midway still shows what moved); the caller marks it failed when this raises."""
    repo = opts.ref.repository(runtime.family.id)
    before = dataclasses.replace(registry.stats)
    try:
        _publish_runtime(matrix, runtime, registry, opts, latest, report, repo)
    finally:
        after = registry.stats
        report.blobs_uploaded = after.blobs_uploaded - before.blobs_uploaded
        report.bytes_uploaded = after.bytes_uploaded - before.bytes_uploaded
        report.blobs_mounted = after.blobs_mounted - before.blobs_mounted
        report.bytes_mounted = after.bytes_mounted - before.bytes_mounted
    written = registry.stats.manifests_written - before.manifests_written
    pushed = report.branch is not None and report.branch["pushed"]
    changed = report.blobs_uploaded or report.blobs_mounted or written or pushed
    report.status = "published" if changed else "unchanged"


def _publish_runtime(
    matrix: Matrix,
    runtime: Runtime,
    registry: Registry,
    opts: Options,
    latest: bool,
    report: RuntimeReport,
    repo: str,
) -> None:
    # The branch head this publish saw first is the lease of its push.
    lease = remote_head(opts.git_remote, runtime.id) if opts.git_remote else None
    snaps = [with_labels(s, opts.labels) for s in read_cells(runtime, opts.work)]
    with log.step(f"prepare {runtime.id} ({', '.join(s.arch for s in snaps)})"):
        images, index = prepare_images(opts.work, snaps, opts.epoch)
    by_arch = {image.arch: image for image in images}
    wanted = {
        tag: (index if arch is None else by_arch[arch].manifest)
        for tag, arch in runtime_tags(runtime, opts.epoch, latest=latest).items()
    }
    report.index = index.digest
    report.manifests = {image.arch: image.manifest.digest for image in images}
    report.tags = {tag: doc.digest for tag, doc in wanted.items()}
    current = {tag: registry.manifest_digest(repo, tag) for tag in wanted}
    if any(current[tag] != doc.digest for tag, doc in wanted.items()):
        with log.step(f"upload {runtime.id} → {opts.ref.host}/{repo}"):
            for image in images:
                for blob in image.layers:
                    registry.push_blob(repo, blob.digest, blob.path)
                registry.push_bytes(repo, image.config)
            for doc in [*(image.manifest for image in images), index]:
                if registry.manifest_digest(repo, doc.digest) != doc.digest:
                    registry.put_manifest(repo, doc.digest, doc.body, doc.media_type)
    branch: BranchResult | None = None
    if opts.git_remote:
        with log.step(f"branch {runtime.id}"):
            content = assemble_branch(runtime, opts.work, snapshots=snaps)
            branch = push_branch(
                matrix, runtime.id, content, opts.git_remote, epoch=opts.epoch, expected=lease
            )
        report.branch = {
            "commit": branch.commit,
            "previous": branch.previous,
            "pushed": branch.pushed,
        }
    for tag, doc in wanted.items():
        if current[tag] != doc.digest:
            registry.put_manifest(repo, tag, doc.body, doc.media_type)
            report.tags_moved.append(tag)


def failure_reason(exc: Exception) -> str:
    """What to record for a runtime that failed. Our own errors are written to be shown; any
    other exception is a bug whose text may quote a request (headers and all), so only its
    type is kept."""
    if isinstance(exc, LambdaImagesError):
        return str(exc)
    return f"internal error ({type(exc).__name__}); run again with LAMBDA_IMAGES_DEBUG=1"


def publish(
    matrix: Matrix,
    runtime_ids: Sequence[str],
    *,
    settings: Settings,
    work: WorkDir,
    registry: str | RegistryRef,
    credentials: Credentials | None,
    git_remote: str | None = None,
    retry: RetryPolicy | None = None,
    report_path: Path | None = None,
) -> PublishReport:
    """Publish each runtime on its own; failures are collected, never raised midway. The
    report is written even when publishing stops early, with what was done until then."""
    ref = registry if isinstance(registry, RegistryRef) else RegistryRef.parse(registry)
    if git_remote is not None:
        check_remote(git_remote)
    if report_path is not None:
        check_report_path(report_path)
    runtimes = [matrix.runtime(r) for r in runtime_ids] if runtime_ids else list(matrix.runtimes)
    opts = Options(
        ref=ref,
        work=work,
        git_remote=git_remote,
        epoch=settings.epoch,
        labels=settings.labels,
        today=settings.today,
    )
    client = Registry(ref.host, scheme=ref.scheme, credentials=credentials, retry=retry)
    latest = latest_runtimes(matrix, opts.today)
    report = PublishReport(registry=str(ref), git_remote=git_remote)
    try:
        for runtime in runtimes:
            is_latest = latest.get(runtime.family.id) == runtime.id
            result = RuntimeReport(
                runtime=runtime.id, repository=f"{ref.host}/{ref.repository(runtime.family.id)}"
            )
            report.runtimes.append(result)
            try:
                publish_runtime(matrix, runtime, client, opts, is_latest, result)
            except Exception as exc:  # one runtime's failure never stops the others
                result.status, result.reason = "failed", failure_reason(exc)
                if settings.debug:
                    log.detail(traceback.format_exc())
                log.error(f"{runtime.id}: not published: {result.reason}")
                if result.tags_moved:
                    log.error(f"{runtime.id}: tags already moved: {', '.join(result.tags_moved)}")
            log.info(f"{runtime.id}: {result.status}")
    finally:
        client.session.close()
        if report_path is not None:
            try:
                report.write(report_path)
            except OSError as exc:
                msg = f"--report {report_path}: cannot write the report ({exc.strerror})"
                raise PublishError(msg) from None
    return report


def check_report_path(path: Path) -> None:
    """Refuse a report path that cannot be written before anything is published."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir() or not parent.is_dir():
        where = "is a directory" if path.is_dir() else f"its folder {parent} does not exist"
        raise UsageError(f"--report {path}: {where}; give the path of a JSON file to write")
