"""`lambda-images outdated --registry` reads the dpkg database of published images off the
registry: the top-most layer that holds ``var/lib/dpkg/status`` wins, a whiteout hides the lower
layers' one, and a runtime with no published tag is said to be so.

The images are pushed by hand to a real registry (docker-registry), layer by layer, with dpkg
status files whose versions are older than anything Debian 12's archives offer, so the newest
versions come from the real archives (their indices are cached under LAMBDA_IMAGES_CACHE)."""

from __future__ import annotations

import gzip
import io
import json
import os
import secrets
import tarfile
from typing import Any

import pytest
from apt_repo import OUTDATED_EXIT
from cli_runner import lambda_images as cli
from publish_helpers import credentials

from pipeline.oci.registry import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Registry
from pipeline.publish.documents import canonical

OLD = "0.0.1-test"


def status(*packages: str) -> bytes:
    return "".join(
        f"Package: {p}\nStatus: install ok installed\nVersion: {OLD}\nArchitecture: amd64\n\n"
        for p in packages
    ).encode()


def layer(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def push_image(registry: Registry, repo: str, tag: str, layers: list[dict[str, bytes]]) -> None:
    blobs = [layer(files) for files in layers]
    for blob in blobs:
        registry.push_bytes(repo, blob)
    config = canonical({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}})
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": registry.push_bytes(repo, config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": OCI_LAYER_GZIP,
                "digest": registry.push_bytes(repo, blob),
                "size": len(blob),
            }
            for blob in blobs
        ],
    }
    registry.put_manifest(repo, tag, canonical(manifest), OCI_MANIFEST)


@pytest.mark.slow
def test_outdated_reads_the_top_most_dpkg_status_of_each_published_image(
    registry_server: Any,
) -> None:
    namespace = f"outdated{secrets.token_hex(4)}"
    registry = Registry(
        registry_server.host, scheme="http", credentials=credentials(registry_server)
    )
    provided = f"{namespace}/provided"
    # provided.debian12: the lower layer lists two packages, the upper one only libc6: the
    # upper status is what the image has, so only libc6 is behind.
    push_image(
        registry,
        provided,
        "debian12-x86_64",
        [
            {"var/lib/dpkg/status": status("base-files", "libc6")},
            {"var/task/app.txt": b"no status here"},
            {"./var/lib/dpkg/status": status("libc6")},
            {"var/runtime/bootstrap": b"#!/bin/sh\n"},
        ],
    )
    # go.debian12: the upper layer deletes the status file: no dpkg database.
    push_image(
        registry,
        f"{namespace}/go",
        "debian12-x86_64",
        [
            {"var/lib/dpkg/status": status("libc6")},
            {"var/lib/dpkg/.wh.status": b""},
        ],
    )
    env = {
        **os.environ,
        "LAMBDA_IMAGES_REGISTRY_USER": registry_server.username,
        "LAMBDA_IMAGES_REGISTRY_PASSWORD": registry_server.password,
    }
    where = f"{registry_server.host}/{namespace}"
    args = ["outdated", "provided.debian12", "go.debian12", "provided.debian13", "--only", "images"]
    result = cli(*args, "--arch", "x86_64", "--registry", where, env=env)
    assert result.returncode == OUTDATED_EXIT, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "provided.debian12/x86_64\toutdated: 1 package(s) with a newer version"
    package, versions, suite = lines[1].strip().split("\t")
    assert package == "libc6"
    assert versions.startswith(f"{OLD} → 2.36-")  # Debian 12's glibc
    assert suite.startswith("(bookworm")
    assert lines[2] == (
        f"go.debian12/x86_64\tnot checked: {where}/go:debian12-x86_64 has no dpkg database"
    )
    assert lines[3] == (
        f"provided.debian13/x86_64\tnot published: no tag debian13-x86_64 in {where}/provided"
    )
    assert len(lines) == 4
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("newer packages in the archives for provided.debian12/x86_64; rebuild them")
    )

    as_json = cli(*args, "--arch", "x86_64", "--registry", where, "--json", env=env)
    report = json.loads(as_json.stdout)
    assert report["inputs"] is None  # --only images: no package registry read
    first = report["images"][0]
    assert first["image"] == f"{where}/provided:debian12-x86_64"
    assert first["digest"] == registry_server.tag_digest(provided, "debian12-x86_64")
    assert [u["package"] for u in first["upgrades"]] == ["libc6"]

    # Credentials are needed to read, and a wrong password says so on one line.
    refused = cli(
        *args,
        "--registry",
        where,
        env={**env, "LAMBDA_IMAGES_REGISTRY_PASSWORD": "wrong"},
    )
    assert refused.returncode == 7, refused.stderr
    assert "wrong" not in refused.stderr
    assert "Traceback" not in refused.stderr
