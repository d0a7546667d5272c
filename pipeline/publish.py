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
   it carries each architecture's SBOM and, in its README and commit message, what changed
   since the previous release (the SBOM attached to that release's ``<tag>.<stamp>-<arch>``
   manifest, compared with the new one);
4. each architecture's SBOM, attached to its manifest (see oci/referrers.py);
5. the tags: the dated ones first (``<tag>.<YYYY.MM.DD.HH>-<arch>``, ``<tag>.<YYYY.MM.DD.HH>``),
   then ``<tag>-<arch>``, ``<tag>``, and ``latest-<arch>``, ``latest`` when runtimes.yaml
   declares the runtime its family's latest. A tag already at the right digest is not rewritten.

The date of the dated tags is the release time (``Settings.release``, set once per run), not
SOURCE_DATE_EPOCH, which stays the fixed time of file contents. A dated tag is immutable: one
that already names another digest refuses the runtime before anything moves. A runtime whose
``<tag>`` and ``<tag>-<arch>`` already name this content is no new release: it keeps the dated
tags of the release that first published it, and mints none.

When every runtime is on the primary, the same blobs, manifests and tags go to each mirror; a
mirror that fails is reported as behind and blocks neither the primary nor the other mirrors.

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

from . import log, sbom
from .branch import BranchResult, push_branch, remote_head
from .conformance import Report
from .digests import CHUNK, HashingWriter, sha256_bytes
from .epoch import iso8601
from .errors import LambdaImagesError, PublishError, UsageError
from .git import check_remote
from .lock import Lock
from .matrix import ARCHES, Matrix, Runtime
from .oci import referrers
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
from .snapshot import ArchSnapshot, assemble_branch, cell_sbom
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
class MirrorReport:
    """One runtime on one mirror: ``published``, ``unchanged`` or ``behind`` (with a reason)."""

    status: str = "behind"
    reason: str | None = None
    tags_moved: list[str] = field(default_factory=list)
    blobs_uploaded: int = 0


@dataclass(kw_only=True)
class RuntimeReport:
    runtime: str
    repository: str
    status: str = "failed"  # published | unchanged | failed
    reason: str | None = None
    release: str | None = None  # YYYY.MM.DD.HH of the release the tags name
    index: str | None = None
    manifests: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    tags_moved: list[str] = field(default_factory=list)
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    blobs_mounted: int = 0
    bytes_mounted: int = 0  # bytes a cross-repository mount saved uploading
    branch: dict[str, Any] | None = None
    mirrors: dict[str, MirrorReport] = field(default_factory=dict)
    sboms: dict[str, str] = field(default_factory=dict)  # arch → digest of its SBOM artifact
    # arch → what changed since the previous release (see sbom.Changes.as_json)
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class PublishReport:
    registry: str
    git_remote: str | None
    mirrors: list[str] = field(default_factory=list)
    runtimes: list[RuntimeReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every runtime published or unchanged on the primary registry (mirrors aside)."""
        return all(r.status != "failed" for r in self.runtimes)

    @property
    def mirrors_behind(self) -> dict[str, dict[str, str | None]]:
        """Mirror → {runtime: reason} for each runtime a mirror lacks."""
        behind: dict[str, dict[str, str | None]] = {}
        for r in self.runtimes:
            for mirror, m in r.mirrors.items():
                if m.status == "behind":
                    behind.setdefault(mirror, {})[r.runtime] = m.reason
        return behind

    def as_json(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "git_remote": self.git_remote,
            "mirrors": self.mirrors,
            "ok": self.ok,
            "published": [r.runtime for r in self.runtimes if r.status == "published"],
            "unchanged": [r.runtime for r in self.runtimes if r.status == "unchanged"],
            "failed": {r.runtime: r.reason for r in self.runtimes if r.status == "failed"},
            "mirrors_behind": self.mirrors_behind,
            "bytes_uploaded": sum(r.bytes_uploaded for r in self.runtimes),
            "bytes_mounted": sum(r.bytes_mounted for r in self.runtimes),
            "runtimes": [dataclasses.asdict(r) for r in self.runtimes],
        }

    def write(self, path: Path) -> None:
        write_json(path, self.as_json())

    def show(self) -> None:
        """One line per runtime on stdout: runtime, status, index digest or reason; then one
        line per runtime a mirror is behind on."""
        for r in self.runtimes:
            print(f"{r.runtime}\t{r.status}\t{r.index or r.reason}", flush=True)
        for mirror, runtimes in self.mirrors_behind.items():
            for runtime, reason in runtimes.items():
                print(f"{runtime}\tbehind on mirror {mirror}\t{reason}", flush=True)


# --- pure: tags, documents ---------------------------------------------------------------------


def dated_stamp(release: int) -> str:
    """``YYYY.MM.DD.HH`` (UTC) of a release time, as AWS dates its tags."""
    return dt.datetime.fromtimestamp(release, dt.UTC).strftime("%Y.%m.%d.%H")


def dated_tags(runtime: Runtime, stamp: str) -> dict[str, str | None]:
    """The release's own tags, tag → arch (None: the index): never moved once written."""
    tags: dict[str, str | None] = {f"{runtime.tag}.{stamp}-{a}": a for a in runtime.architectures}
    tags[f"{runtime.tag}.{stamp}"] = None
    return tags


def arch_tag(runtime: Runtime, arch: str) -> str:
    """The tag of a runtime's single-architecture image: ``<tag>-<arch>``."""
    return f"{runtime.tag}-{arch}"


def moving_tags(runtime: Runtime, *, latest: bool) -> dict[str, str | None]:
    """The tags each release moves: ``<tag>-<arch>``, ``<tag>``, and the ``latest`` ones."""
    tags: dict[str, str | None] = {arch_tag(runtime, a): a for a in runtime.architectures}
    tags[runtime.tag] = None
    if latest:
        tags.update({f"latest-{a}": a for a in runtime.architectures})
        tags["latest"] = None
    return tags


def runtime_tags(runtime: Runtime, release: int, *, latest: bool) -> dict[str, str | None]:
    """Tag → arch it names (None: the index), in the order they are written: dated first, so
    that a release whose moving tags are in place always has its dated tags too."""
    return {
        **dated_tags(runtime, dated_stamp(release)),
        **moving_tags(runtime, latest=latest),
    }


def release_stamps(runtime: Runtime, tags: Sequence[str]) -> list[str]:
    """The stamps of the runtime's dated index tags among ``tags``, newest first."""
    pattern = re.compile(re.escape(runtime.tag) + r"\.(\d{4}\.\d{2}\.\d{2}\.\d{2})")
    return sorted({m[1] for t in tags if (m := pattern.fullmatch(t))}, reverse=True)


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
    epoch: int = 0  # SOURCE_DATE_EPOCH: image `created`, branch commit dates
    release: int = 0  # the release time: dated tags
    labels: dict[str, str] = field(default_factory=dict)
    today: dt.date


@dataclass(frozen=True, kw_only=True)
class Mirror:
    """Another registry that gets the same digests and tags as the primary."""

    ref: RegistryRef
    client: Registry


def check_dated(
    runtime: Runtime, where: str, wanted: dict[str, Document], current: dict[str, str | None]
) -> None:
    """Refuse (PublishError) when a dated tag we would write already names another digest."""
    for tag, doc in wanted.items():
        if tag.startswith(f"{runtime.tag}.") and current[tag] not in (None, doc.digest):
            msg = (
                f"{where}:{tag} already names {current[tag]}, not this release's {doc.digest}: "
                "a dated tag is never moved, so nothing of this runtime was published; publish "
                "it under a later release time (LAMBDA_IMAGES_RELEASE_TIME, in another hour)"
            )
            raise PublishError(msg)


def earlier_release(runtime: Runtime, registry: Registry, repo: str, index: Document) -> str | None:
    """The stamp of the newest dated index tag that already names ``index``, if any."""
    for stamp in release_stamps(runtime, registry.list_tags(repo)):
        if registry.manifest_digest(repo, f"{runtime.tag}.{stamp}") == index.digest:
            return stamp
    return None


def push_images(
    registry: Registry,
    repo: str,
    images: Sequence[ArchImage],
    index: Document,
) -> None:
    """Blobs (HEAD first), then the manifests and the index by digest: nothing visible moves."""
    for image in images:
        for blob in image.layers:
            registry.push_blob(repo, blob.digest, blob.path)
        registry.push_bytes(repo, image.config)
    for doc in [*(image.manifest for image in images), index]:
        if registry.manifest_digest(repo, doc.digest) != doc.digest:
            registry.put_manifest(repo, doc.digest, doc.body, doc.media_type)


def move_tags(
    registry: Registry,
    repo: str,
    wanted: dict[str, Document],
    current: dict[str, str | None],
    moved: list[str],
) -> None:
    """Write each tag not already at its digest, recording it in ``moved`` as it goes."""
    for tag, doc in wanted.items():
        if current[tag] != doc.digest:
            registry.put_manifest(repo, tag, doc.body, doc.media_type)
            moved.append(tag)


def sbom_artifacts(
    images: Sequence[ArchImage], sboms: dict[str, bytes], created: str
) -> list[referrers.Artifact]:
    """Each image's SBOM as an OCI artifact attached to its manifest."""
    return [
        referrers.artifact(
            blob=sboms[image.arch],
            artifact_type=sbom.MEDIA_TYPE,
            subject_body=image.manifest.body,
            subject_media_type=image.manifest.media_type,
            title=sbom.FILE_NAME,
            annotations={"org.opencontainers.image.created": created},
        )
        for image in images
    ]


def previous_sbom(registry: Registry, repo: str, manifest: str) -> dict[str, Any] | None:
    """The SBOM attached to ``manifest`` (found as ``oras discover`` finds it), or None."""
    for digest in referrers.discover(registry, repo, manifest, sbom.MEDIA_TYPE):
        blob = referrers.artifact_content(registry, repo, digest)
        if blob is not None:
            try:
                parsed = json.loads(blob)
            except (ValueError, RecursionError):  # the registry's bytes: maybe no SBOM at all
                continue
            if isinstance(parsed, dict):
                return parsed
    return None


def release_changes(
    runtime: Runtime, registry: Registry, repo: str, stamp: str, sboms: dict[str, bytes]
) -> dict[str, sbom.Changes]:
    """Per arch, what changed since the newest release dated before ``stamp``: its
    ``<tag>.<stamp>-<arch>`` manifest's SBOM against the new one. Dated tags never move and
    their SBOMs never change, so a republish of a release computes the same changes."""
    older = [s for s in release_stamps(runtime, registry.list_tags(repo)) if s < stamp]
    previous = older[0] if older else None
    changes = {}
    for arch, document in sboms.items():
        new = json.loads(document)
        if previous is None:
            changes[arch] = sbom.diff(None, new, None)
            continue
        manifest = registry.manifest_digest(repo, f"{runtime.tag}.{previous}-{arch}")
        if manifest is None:
            changes[arch] = sbom.Changes(previous=previous, note=f"first release for {arch}")
            continue
        old = previous_sbom(registry, repo, manifest)
        if old is None:
            note = f"release {previous} has no SBOM attached; what changed is not known"
            changes[arch] = sbom.Changes(previous=previous, note=note)
            continue
        changes[arch] = sbom.diff(old, new, previous)
    return changes


def changelog(stamp: str, changes: dict[str, sbom.Changes]) -> list[str]:
    """The release's changes as plain lines: the commit message body and the README's."""
    previous = next((c.previous for c in changes.values() if c.previous), None)
    if all(c.previous is None for c in changes.values()):
        head = f"Release {stamp}: first release."
    else:
        head = f"Release {stamp}, changes since {previous}:"
    lines = [head]
    for arch, change in changes.items():
        lines += ["", f"{arch}:", *(f"  {line}" for line in change.lines())]
    return lines


def history_markdown(stamp: str, changes: dict[str, sbom.Changes]) -> list[str]:
    """The README's change history section: this release against the one before it."""
    lines = changelog(stamp, changes)
    out = [f"### {lines[0].rstrip(':')}"]
    for line in lines[1:]:
        if not line:
            out.append("")
        elif line.startswith("  "):
            out.append(f"- `{line.strip()}`")
        else:
            out.append(line)
    return out


@dataclass(frozen=True, kw_only=True)
class Release:
    """What a runtime's publish put on the primary registry, for its mirrors."""

    runtime: Runtime
    images: list[ArchImage]
    index: Document
    tags: dict[str, Document]
    sboms: list[referrers.Artifact] = field(default_factory=list)


def publish_runtime(
    matrix: Matrix,
    runtime: Runtime,
    registry: Registry,
    opts: Options,
    latest: bool,
    report: RuntimeReport,
) -> Release:
    """Publish one runtime, recording progress in ``report`` as it goes (so that a failure
    midway still shows what moved); the caller marks it failed when this raises. Returns what
    the primary registry now has, for the mirrors."""
    repo = opts.ref.repository(runtime.family.id)
    before = dataclasses.replace(registry.stats)
    try:
        release = _publish_runtime(matrix, runtime, registry, opts, latest, report, repo)
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
    return release


def _publish_runtime(
    matrix: Matrix,
    runtime: Runtime,
    registry: Registry,
    opts: Options,
    latest: bool,
    report: RuntimeReport,
    repo: str,
) -> Release:
    # The branch head this publish saw first is the lease of its push.
    lease = remote_head(opts.git_remote, runtime.id) if opts.git_remote else None
    snaps = [with_labels(s, opts.labels) for s in read_cells(runtime, opts.work)]
    with log.step(f"prepare {runtime.id} ({', '.join(s.arch for s in snaps)})"):
        images, index = prepare_images(opts.work, snaps, opts.epoch)
        pins = sbom.go_pins(Lock.for_matrix(matrix.path))
        sboms = {snap.arch: cell_sbom(opts.work, snap, opts.epoch, pins) for snap in snaps}
    artifacts = sbom_artifacts(images, sboms, iso8601(opts.epoch))
    by_arch = {image.arch: image for image in images}

    def documents(tags: dict[str, str | None]) -> dict[str, Document]:
        return {tag: index if a is None else by_arch[a].manifest for tag, a in tags.items()}

    moving = documents(moving_tags(runtime, latest=latest))
    current = {tag: registry.manifest_digest(repo, tag) for tag in moving}
    own = [tag for tag in moving if tag == runtime.tag or tag.startswith(f"{runtime.tag}-")]
    # Content the runtime's own tags already name is no new release: it keeps its dated tags.
    stamp = None
    if all(current[tag] == moving[tag].digest for tag in own):
        stamp = earlier_release(runtime, registry, repo, index)
    stamp = stamp or dated_stamp(opts.release)
    wanted = {**documents(dated_tags(runtime, stamp)), **moving}
    current.update(
        {tag: registry.manifest_digest(repo, tag) for tag in wanted if tag not in current}
    )
    check_dated(runtime, f"{opts.ref.host}/{repo}", wanted, current)
    report.release = stamp
    report.index = index.digest
    report.manifests = {image.arch: image.manifest.digest for image in images}
    report.tags = {tag: doc.digest for tag, doc in wanted.items()}
    changes = release_changes(runtime, registry, repo, stamp, sboms)
    report.changes = {arch: change.as_json() for arch, change in changes.items()}
    if any(current[tag] != doc.digest for tag, doc in wanted.items()):
        with log.step(f"upload {runtime.id} → {opts.ref.host}/{repo}"):
            push_images(registry, repo, images, index)
    branch: BranchResult | None = None
    if opts.git_remote:
        with log.step(f"branch {runtime.id}"):
            content = assemble_branch(
                runtime,
                opts.work,
                snapshots=snaps,
                sboms=sboms,
                history=history_markdown(stamp, changes),
            )
            branch = push_branch(
                matrix,
                runtime.id,
                content,
                opts.git_remote,
                epoch=opts.epoch,
                expected=lease,
                changes="\n".join(changelog(stamp, changes)),
            )
        report.branch = {
            "commit": branch.commit,
            "previous": branch.previous,
            "pushed": branch.pushed,
        }
    for item in artifacts:  # attached before any tag moves: a tagged image has its SBOM
        referrers.attach(registry, repo, item)
    report.sboms = {image.arch: item.digest for image, item in zip(images, artifacts, strict=True)}
    move_tags(registry, repo, wanted, current, report.tags_moved)
    return Release(runtime=runtime, images=images, index=index, tags=wanted, sboms=artifacts)


def mirror_runtime(mirror: Mirror, release: Release) -> MirrorReport:
    """The primary's digests and tags on one mirror; a failure makes it ``behind``, no more."""
    runtime, images, index, wanted = release.runtime, release.images, release.index, release.tags
    repo = mirror.ref.repository(runtime.family.id)
    where = f"{mirror.ref.host}/{repo}"
    result = MirrorReport()
    before = dataclasses.replace(mirror.client.stats)
    try:
        current = {tag: mirror.client.manifest_digest(repo, tag) for tag in wanted}
        check_dated(runtime, where, wanted, current)
        if any(current[tag] != doc.digest for tag, doc in wanted.items()):
            with log.step(f"mirror {runtime.id} → {where}"):
                push_images(mirror.client, repo, images, index)
                for item in release.sboms:
                    referrers.attach(mirror.client, repo, item)
                move_tags(mirror.client, repo, wanted, current, result.tags_moved)
        else:  # the images are there: their SBOMs too (a mirror filled before SBOMs existed)
            for item in release.sboms:
                referrers.attach(mirror.client, repo, item)
    except Exception as exc:  # a mirror never stops the primary or the other mirrors
        result.reason = failure_reason(exc)
        log.warning(f"{runtime.id}: mirror {mirror.ref} is behind: {result.reason}")
        return result
    finally:
        result.blobs_uploaded = mirror.client.stats.blobs_uploaded - before.blobs_uploaded
    result.status = "published" if result.tags_moved else "unchanged"
    return result


def mirror_releases(mirror: Mirror, releases: Sequence[tuple[RuntimeReport, Release]]) -> None:
    """Each release the primary has, on one mirror; an unreachable mirror is tried once."""
    try:
        if releases:
            mirror.client.ping()
    except Exception as exc:  # a mirror never stops the primary or the other mirrors
        reason = failure_reason(exc)
        log.warning(f"mirror {mirror.ref} is behind: {reason}")
        for report, _ in releases:
            report.mirrors[str(mirror.ref)] = MirrorReport(reason=reason)
        return
    for report, release in releases:
        report.mirrors[str(mirror.ref)] = mirror_runtime(mirror, release)


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
    mirrors: Sequence[tuple[str | RegistryRef, Credentials | None]] = (),
) -> PublishReport:
    """Publish each runtime on its own; failures are collected, never raised midway. The
    report is written even when publishing stops early, with what was done until then.
    ``mirrors`` (registry, credentials) get the same digests and tags after the primary."""
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
        release=settings.release,
        labels=settings.labels,
        today=settings.today,
    )
    client = Registry(ref.host, scheme=ref.scheme, credentials=credentials, retry=retry)
    copies = []
    for where, creds in mirrors:
        mref = where if isinstance(where, RegistryRef) else RegistryRef.parse(where)
        copies.append(
            Mirror(
                ref=mref,
                client=Registry(mref.host, scheme=mref.scheme, credentials=creds, retry=retry),
            )
        )
    report = PublishReport(
        registry=str(ref), git_remote=git_remote, mirrors=[str(m.ref) for m in copies]
    )
    releases: list[tuple[RuntimeReport, Release]] = []
    try:
        for runtime in runtimes:
            latest = matrix.latest(runtime.family)
            is_latest = latest is not None and latest.id == runtime.id
            result = RuntimeReport(
                runtime=runtime.id, repository=f"{ref.host}/{ref.repository(runtime.family.id)}"
            )
            report.runtimes.append(result)
            try:
                release = publish_runtime(matrix, runtime, client, opts, is_latest, result)
                releases.append((result, release))
            except Exception as exc:  # one runtime's failure never stops the others
                result.status, result.reason = "failed", failure_reason(exc)
                if settings.debug:
                    log.detail(traceback.format_exc())
                log.error(f"{runtime.id}: not published: {result.reason}")
                if result.tags_moved:
                    log.error(f"{runtime.id}: tags already moved: {', '.join(result.tags_moved)}")
            log.info(f"{runtime.id}: {result.status}")
        # Mirrors after every runtime is on the primary, so that none of them delays it.
        for mirror in copies:
            mirror_releases(mirror, releases)
    finally:
        client.session.close()
        for mirror in copies:
            mirror.client.session.close()
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
