"""Conformance checks: every image from runtimes.yaml passes them, and each check rejects a
deliberately broken image with a message that says what is wrong and where."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from fake_secrets import fake_access_key_id, fake_secret_key, private_key_pem

from pipeline.conformance import (
    MAX_UNCOMPRESSED,
    Entry,
    _read_layer,
    _readable,
    _scan_secrets,
    check_size,
    merge_layers,
    run_checks,
)
from pipeline.errors import ConfigurationError
from pipeline.matrix import ARCHES

NAMESPACE = os.environ.get("LAMBDA_IMAGES_NAMESPACE", "") or "lambda-images"


def _layer(members: dict[str, bytes | None]) -> io.BytesIO:
    """A layer tar: name → file content, or None for a directory."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
    data.seek(0)
    return data


def test_credentials_are_recognised_but_aws_example_keys_are_not() -> None:
    access_key, secret_key = fake_access_key_id(), fake_secret_key()
    credentials = (
        f"[default]\naws_access_key_id = {access_key}\naws_secret_access_key = {secret_key}\n"
    )
    assert _scan_secrets(credentials.encode()) == ["AWS access key id", "AWS secret access key"]
    assert _scan_secrets(private_key_pem()) == ["private key"]
    # The documented examples, and the markers a TLS library carries, are not credentials.
    assert _scan_secrets(b"aws_access_key_id = AKIAIOSFODNN7EXAMPLE") == []
    assert _scan_secrets(b"-----BEGIN RSA PRIVATE KEY-----\x00%s\x00") == []
    assert _scan_secrets(b"-----BEGIN DSA PRIVATE KEY-----<a private key>-----END DSA") == []


def test_layers_merge_with_whiteouts_and_keep_findings_of_deleted_files() -> None:
    access_key = fake_access_key_id()
    bottom = _read_layer(
        _layer(
            {
                ".env": f"AWS_ACCESS_KEY_ID={access_key}".encode(),
                "opt": None,
                "opt/a": b"a",
                "opt/cache": None,
                "opt/cache/old": b"old",
                "usr/bin/tool": b"\x7fELF\x02\x01\x01" + bytes(11) + b"\xb7\x00" + bytes(20),
            }
        )
    )
    top = _read_layer(
        _layer(
            {
                ".wh..env": b"",
                "opt/.wh.a": b"",
                "opt/cache/.wh..wh..opq": b"",
                "opt/cache/new": b"n",
            }
        )
    )
    merged, findings = merge_layers([bottom, top])
    assert sorted(merged) == ["/opt", "/opt/cache", "/opt/cache/new", "/usr/bin/tool"]
    assert merged["/usr/bin/tool"].elf == "arm64"
    # Deleted in the top layer, still in the image's bottom one.
    assert findings == ["AWS access key id in /.env (layer 1)"]


def test_size_limit_is_ten_gib_uncompressed() -> None:
    assert check_size(MAX_UNCOMPRESSED).ok
    over = check_size(MAX_UNCOMPRESSED + 1)
    assert not over.ok
    assert "over Lambda's 10.0 GiB limit" in over.message


def test_readable_means_readable_by_lambdas_user() -> None:
    def entry(mode: int, uid: int = 0, gid: int = 0, kind: str = "file") -> Entry:
        return Entry(path="/var/task/x", kind=kind, mode=mode, uid=uid, gid=gid, size=0)

    assert _readable(entry(0o644))
    assert not _readable(entry(0o600))
    assert _readable(entry(0o600, uid=993))  # owned by the sandbox user
    assert not _readable(entry(0o744, kind="dir"))  # no search permission for others
    assert _readable(entry(0o755, kind="dir"))


def test_family_without_a_probe_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no probe function"):
        run_checks(None, "any/image:tag", ARCHES["x86_64"], tmp_path / "probe")
