"""The OCI 1.1 artifact manifest of an SBOM and the referrers tag index it is listed in."""

from __future__ import annotations

import hashlib
import json

from pipeline.oci.referrers import Artifact, artifact, fallback_tag, merged_index

SUBJECT = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sbom_artifact(blob: bytes = b'{"bomFormat":"CycloneDX"}') -> Artifact:
    return artifact(
        blob=blob,
        artifact_type="application/vnd.cyclonedx+json",
        subject_body=SUBJECT,
        subject_media_type=MANIFEST,
        title="sbom.cdx.json",
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    )


def test_the_artifact_manifest_names_its_subject_and_the_empty_config() -> None:
    item = sbom_artifact()
    body = json.loads(item.manifest)
    assert body["artifactType"] == "application/vnd.cyclonedx+json"
    assert body["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": sha(b"{}"),
        "size": 2,
    }
    assert body["subject"] == {"mediaType": MANIFEST, "digest": sha(SUBJECT), "size": len(SUBJECT)}
    (layer,) = body["layers"]
    assert layer["digest"] == sha(b'{"bomFormat":"CycloneDX"}')
    assert layer["annotations"] == {"org.opencontainers.image.title": "sbom.cdx.json"}
    assert item.digest == sha(item.manifest)
    assert fallback_tag(sha(SUBJECT)) == "sha256-" + hashlib.sha256(SUBJECT).hexdigest()


def test_the_referrers_index_keeps_what_it_lists_and_adds_ours_once() -> None:
    ours = sbom_artifact().descriptor()
    someone = {"mediaType": MANIFEST, "digest": sha(b"sig"), "size": 3, "artifactType": "x/sig"}
    existing = json.dumps({"schemaVersion": 2, "manifests": [someone]}).encode()
    merged = merged_index(existing, ours)
    assert merged is not None
    index = json.loads(merged)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert index["manifests"] == [someone, ours]
    assert merged_index(merged, ours) is None  # already listed: nothing to write
    fresh = merged_index(None, ours)
    assert fresh is not None and json.loads(fresh)["manifests"] == [ours]
