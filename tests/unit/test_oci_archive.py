"""`docker save` archives in both layouts are read alike: config, layers in order, findings.

The two layouts are written here the way the engines write them: Docker 20.10's legacy layout
(``<id>/layer.tar``, ``<id>.json``, a duplicate layer as a symlink) and Docker >= 25's OCI image
layout (``blobs/sha256/…``, ``index.json``, ``oci-layout``, a ``LayerSources`` entry per layer).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import IO

import pytest

from pipeline.conformance import _read_layer, check_credentials, check_manifest, merge_layers
from pipeline.oci.archive import ArchiveError, read_saved

KEY = (
    b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
    b"-----END PRIVATE KEY-----\n"
)
OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


LAYERS = [
    _tar({"etc/os-release": b"ID=debian\n"}),
    _tar({"opt/deploy/key.pem": KEY}),
    _tar({"opt/deploy/.wh.key.pem": b""}),  # deleted later: still a finding
    _tar({"etc/os-release": b"ID=debian\n"}),  # the same bytes again: one file, twice listed
]
DIFF_IDS = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in LAYERS]
CONFIG = {
    "architecture": "arm64",
    "os": "linux",
    "config": {"Entrypoint": ["/lambda-entrypoint.sh"]},
    "rootfs": {"type": "layers", "diff_ids": DIFF_IDS},
}


def _archive(members: list[tuple[str, bytes | str]]) -> io.BytesIO:
    """A tar of (name, bytes) files and (name, "->target") symlinks, in the order given."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data.removeprefix("->")
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out


def legacy_archive() -> io.BytesIO:
    config = json.dumps(CONFIG).encode()
    config_id = hashlib.sha256(config).hexdigest()
    ids = [f"{i:064x}" for i in range(1, len(LAYERS) + 1)]
    members: list[tuple[str, bytes | str]] = []
    for i, (layer_id, layer) in enumerate(zip(ids, LAYERS, strict=True)):
        if i == 3:
            members.append((f"{layer_id}/layer.tar", f"->../{ids[0]}/layer.tar"))
        else:
            members.append((f"{layer_id}/layer.tar", layer))
    manifest = [{"Config": f"{config_id}.json", "Layers": [f"{i}/layer.tar" for i in ids]}]
    members += [(f"{config_id}.json", config), ("manifest.json", json.dumps(manifest).encode())]
    return _archive(members)


def oci_archive(media_type: str = OCI_TAR) -> io.BytesIO:
    config = json.dumps(CONFIG).encode()
    blobs = {hashlib.sha256(b).hexdigest(): b for b in [*LAYERS, config]}
    config_path = f"blobs/sha256/{hashlib.sha256(config).hexdigest()}"
    layer_paths = [f"blobs/sha256/{hashlib.sha256(layer).hexdigest()}" for layer in LAYERS]
    image_manifest = json.dumps({"schemaVersion": 2, "config": {}, "layers": []}).encode()
    blobs[hashlib.sha256(image_manifest).hexdigest()] = image_manifest
    sources = {d: {"mediaType": media_type, "size": 1, "digest": d} for d in DIFF_IDS}
    manifest = [{"Config": config_path, "Layers": layer_paths, "LayerSources": sources}]
    members: list[tuple[str, bytes | str]] = [
        (f"blobs/sha256/{digest}", data) for digest, data in sorted(blobs.items())
    ]
    members += [
        ("index.json", json.dumps({"schemaVersion": 2, "manifests": []}).encode()),
        ("manifest.json", json.dumps(manifest).encode()),
        ("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
    ]
    return _archive(members)


def _bytes(_path: str, tar: IO[bytes]) -> bytes:
    return tar.read()


@pytest.mark.parametrize(("make", "layout"), [(legacy_archive, "legacy"), (oci_archive, "oci")])
def test_both_layouts_give_the_same_config_and_layers(make: object, layout: str) -> None:
    saved = read_saved(make(), _bytes)  # type: ignore[operator]
    assert saved.layout == layout
    assert saved.config == CONFIG
    assert saved.layers == LAYERS
    assert saved.foreign_layers() == []


@pytest.mark.parametrize("make", [legacy_archive, oci_archive])
def test_a_planted_key_is_found_in_either_layout(make: object) -> None:
    saved = read_saved(make(), lambda _p, tar: _read_layer(tar))  # type: ignore[operator]
    merged, findings = merge_layers(saved.layers)
    assert "/opt/deploy/key.pem" not in merged  # deleted in layer 3 …
    assert findings == ["private key in /opt/deploy/key.pem (layer 2)"]  # … found all the same


def test_only_non_distributable_layer_sources_are_foreign() -> None:
    assert read_saved(oci_archive(FOREIGN), _bytes).foreign_layers() == sorted(set(DIFF_IDS))


def test_manifest_and_credentials_checks_read_the_oci_layout() -> None:
    from pipeline.conformance import ImageFiles

    saved = read_saved(oci_archive(), lambda _p, tar: _read_layer(tar))
    merged, findings = merge_layers(saved.layers)
    files = ImageFiles(
        config=saved.config, manifest=saved.manifest, merged=merged, secrets=findings
    )
    assert check_manifest(files).ok, check_manifest(files).message
    assert not check_credentials(files).ok


def test_an_archive_naming_a_missing_layer_is_refused() -> None:
    archive = oci_archive()
    with tarfile.open(fileobj=archive) as tar:
        kept = [
            (m.name, tar.extractfile(m).read())  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.name != f"blobs/sha256/{hashlib.sha256(LAYERS[1]).hexdigest()}"
        ]
    with pytest.raises(ArchiveError, match="names layer 'blobs/sha256/"):
        read_saved(_archive(list(kept)), _bytes)
