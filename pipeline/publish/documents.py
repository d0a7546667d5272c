"""The registry documents of a release, made from the work folder's snapshots.

The published image *is* the snapshot: its layers are the branch tarballs, recompressed with
gzip (Docker cannot pull xz layers) deterministically — mtime 0, no file name, one level — so
the config's diff IDs are the snapshot's and the same snapshot always gives the same digests.
Gzip results are cached in the work folder's ``registry-blobs/`` by diff ID. Nothing here talks
to a registry.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import lzma
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .. import progress, sbom
from ..digests import CHUNK, HashingWriter, sha256_bytes
from ..epoch import iso8601
from ..errors import PublishError
from ..matrix import ARCHES, Runtime
from ..oci import referrers
from ..oci.registry import OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST
from ..records import ArchSnapshot, Report
from ..workdir import TEST, WorkDir, atomic_file, read_json, write_json

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
        if missing := snap.missing_layers(cell):
            raise PublishError(f"{cell.layers / missing[0]}: a layer of the snapshot is missing")
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
    try:
        with (
            atomic_file(cache, ".gz-") as pending,
            source.open("rb") as inp,
            progress.transfer(f"gzip {layer.sha256[:12]}", layer.compressed_size) as meter,
        ):
            hashing = HashingWriter(pending.stream)
            unxz = lzma.LZMADecompressor()
            with gzip.GzipFile(
                filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=hashing, mtime=0
            ) as gz:
                while chunk := inp.read(CHUNK):
                    packed.update(chunk)
                    data = unxz.decompress(chunk)
                    plain.update(data)
                    gz.write(data)
                    meter.advance(len(chunk))
            if packed.hexdigest() != layer.sha256 or "sha256:" + plain.hexdigest() != layer.diff_id:
                msg = (
                    f"{source}: does not match snapshot.json (sha256 or diff ID differ); the work "
                    "directory is damaged: run the snapshot stage again"
                )
                raise PublishError(msg)
            digest = "sha256:" + hashing.hexdigest
            path = pending.keep(cache / f"{hashing.hexdigest}.tar.gz")
    except FileNotFoundError:
        raise PublishError(f"{source}: layer missing from the work directory") from None
    except lzma.LZMAError:
        raise PublishError(f"{source}: not a valid .tar.xz; run the snapshot stage again") from None
    size = path.stat().st_size
    write_json(record, {"digest": digest, "size": size})
    return Blob(digest=digest, size=size, path=path)


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
