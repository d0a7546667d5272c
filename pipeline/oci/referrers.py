"""Artifacts attached to an image manifest (OCI 1.1 ``subject``), and finding them again.

An attachment is an image manifest with an ``artifactType``, the empty config (``{}``), one
layer (the artifact itself) and a ``subject`` naming the image manifest; it is pushed by
digest. A registry that answers the referrers API (``GET /v2/<name>/referrers/<digest>``)
lists it by itself. One that does not (CNCF distribution 2.8, this project's test registry)
gets the referrers tag scheme of the distribution spec: the tag ``sha256-<hex of the subject
digest>`` holds an OCI image index of the subject's referrers, which we merge into (never
drop what it lists) and write only when it lacks ours — so a republish writes nothing.
Discovery reads the API first and the tag second, as ``oras discover`` does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from ..digests import sha256_bytes
from .registry import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, Registry, is_descriptor

EMPTY_CONFIG: Final = b"{}"


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, kw_only=True)
class Artifact:
    """One attachment: its manifest's bytes and the blob it carries."""

    manifest: bytes
    blob: bytes
    artifact_type: str
    subject: str  # digest of the image manifest it is attached to

    @property
    def digest(self) -> str:
        return sha256_bytes(self.manifest)

    def descriptor(self) -> dict[str, Any]:
        """Its entry in a referrers index."""
        body = json.loads(self.manifest)
        entry: dict[str, Any] = {
            "mediaType": OCI_MANIFEST,
            "digest": self.digest,
            "size": len(self.manifest),
            "artifactType": self.artifact_type,
        }
        if body.get("annotations"):
            entry["annotations"] = body["annotations"]
        return entry


def artifact(
    *,
    blob: bytes,
    artifact_type: str,
    subject_body: bytes,
    subject_media_type: str,
    title: str,
    annotations: dict[str, str],
) -> Artifact:
    """The artifact manifest of ``blob`` attached to the manifest ``subject_body``."""
    subject = sha256_bytes(subject_body)
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": OCI_EMPTY, "digest": sha256_bytes(EMPTY_CONFIG), "size": 2},
        "layers": [
            {
                "mediaType": artifact_type,
                "digest": sha256_bytes(blob),
                "size": len(blob),
                "annotations": {"org.opencontainers.image.title": title},
            }
        ],
        "subject": {"mediaType": subject_media_type, "digest": subject, "size": len(subject_body)},
        "annotations": dict(sorted(annotations.items())),
    }
    return Artifact(
        manifest=_canonical(body), blob=blob, artifact_type=artifact_type, subject=subject
    )


def fallback_tag(digest: str) -> str:
    """The referrers tag of a subject: ``sha256:abc…`` → ``sha256-abc…``."""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}-{hexdigest}"


def merged_index(existing: bytes | None, entry: dict[str, Any]) -> bytes | None:
    """The referrers index ``existing`` with ``entry`` added; None when it lists it already."""
    manifests: list[dict[str, Any]] = []
    if existing is not None:
        try:
            listed = json.loads(existing).get("manifests")
        except (ValueError, AttributeError, RecursionError):
            listed = None
        manifests = [m for m in listed or [] if isinstance(m, dict)]
    if any(m.get("digest") == entry["digest"] for m in manifests):
        return None
    manifests.append(entry)
    return _canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})


def attach(registry: Registry, repo: str, item: Artifact) -> bool:
    """Push ``item`` (blobs, then its manifest by digest) and make it discoverable; True when
    anything was written. Everything is checked before written, so a republish writes nothing."""
    before = registry.stats.blobs_uploaded
    registry.push_bytes(repo, EMPTY_CONFIG)
    registry.push_bytes(repo, item.blob)
    wrote = registry.stats.blobs_uploaded != before
    if registry.manifest_digest(repo, item.digest) != item.digest:
        registry.put_manifest(repo, item.digest, item.manifest, OCI_MANIFEST)
        wrote = True
    listed = registry.referrers(repo, item.subject)
    if listed is not None and any(m.get("digest") == item.digest for m in listed):
        return wrote  # the registry keeps the list itself
    tag = fallback_tag(item.subject)
    existing = None
    if registry.manifest_digest(repo, tag) is not None:
        existing, _ = registry.get_manifest(repo, tag)
    index = merged_index(existing, item.descriptor())
    if index is not None:
        registry.put_manifest(repo, tag, index, OCI_INDEX)
        wrote = True
    return wrote


def discover(registry: Registry, repo: str, subject: str, artifact_type: str) -> list[str]:
    """Digests of the manifests attached to ``subject`` with ``artifact_type``: from the
    referrers API when the registry answers it, else from the referrers tag."""
    listed = registry.referrers(repo, subject)
    if listed is None:
        tag = fallback_tag(subject)
        if registry.manifest_digest(repo, tag) is None:
            return []
        body, _ = registry.get_manifest(repo, tag)
        listed = _descriptors(body, "manifests")
    return sorted(
        str(m["digest"])
        for m in listed
        if m.get("artifactType") == artifact_type and isinstance(m.get("digest"), str)
    )


def artifact_content(registry: Registry, repo: str, manifest_digest: str) -> bytes | None:
    """The one layer of the artifact manifest ``manifest_digest`` (None if it has none)."""
    body, _ = registry.get_manifest(repo, manifest_digest)
    layers = _descriptors(body, "layers")
    if len(layers) != 1:
        return None
    return registry.get_blob(repo, layers[0]["digest"])


def _descriptors(body: bytes, key: str) -> list[dict[str, Any]]:
    """The descriptors a manifest lists under ``key``; none when it is not a manifest (a
    missing or broken attachment is no attachment)."""
    try:
        listed = json.loads(body).get(key)
    except (ValueError, AttributeError, RecursionError):
        return []
    return [m for m in listed if is_descriptor(m)] if isinstance(listed, list) else []
