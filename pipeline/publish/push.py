"""Putting a release into a registry: blobs (HEAD first), manifests and the index by digest (nothing
visible moves), SBOM referrers, then tags. Each step is idempotent: what the registry already has
is not sent again."""

from __future__ import annotations

from collections.abc import Sequence

from ..oci import referrers
from ..oci.registry import Registry
from .documents import ArchImage, Document


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


def attach_sboms(registry: Registry, repo: str, artifacts: Sequence[referrers.Artifact]) -> None:
    """Each image's SBOM, attached to its manifest (see oci/referrers.py)."""
    for item in artifacts:
        referrers.attach(registry, repo, item)
