"""normalize_layer and what engines' tar writers really emit: hard links that join symlinks, and
names no engine writes (``..``, ``.`` and empty parts), which are refused."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from pipeline.errors import SnapshotError
from pipeline.oci.layers import normalize_layer

EPOCH = 1704067200


def _tar(path: Path, entries: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info in entries:
            body = data.get(info.name)
            if body is not None:
                info.size = len(body)
            tar.addfile(info, io.BytesIO(body) if body is not None else None)
    return path


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, link, 0o777, EPOCH
    return info


def test_a_hard_link_to_a_symlink_stays_a_symlink_under_each_name(tmp_path: Path) -> None:
    # Docker writes the symlink under its later name and hard-links the earlier one to it, as it
    # does for /usr/bin/python3 → python3.11 joined by another name of the same inode.
    src = _tar(
        tmp_path / "layer.tar",
        [
            _entry("usr/lib/python3.11"),
            _entry("usr/bin/zz-python", tarfile.SYMTYPE, "../lib/python3.11"),
            _entry("usr/bin/aa-python", tarfile.LNKTYPE, "usr/bin/zz-python"),
        ],
        {"usr/lib/python3.11": b"interpreter"},
    )
    normalize_layer(src, tmp_path / "n.tar", EPOCH)
    with tarfile.open(tmp_path / "n.tar") as tar:
        aa, zz = tar.getmember("usr/bin/aa-python"), tar.getmember("usr/bin/zz-python")
        assert aa.issym() and aa.linkname == "../lib/python3.11"
        assert zz.islnk() and zz.linkname == "usr/bin/aa-python"
        out = tmp_path / "out"
        tar.extractall(out, filter="tar")
    assert (out / "usr/bin/aa-python").is_symlink()
    for name in ("aa-python", "zz-python"):
        assert (out / "usr/bin" / name).read_bytes() == b"interpreter"


def test_a_hard_link_to_a_dangling_symlink_is_kept(tmp_path: Path) -> None:
    src = _tar(
        tmp_path / "layer.tar",
        [
            _entry("etc/zz", tarfile.SYMTYPE, "/nowhere"),
            _entry("etc/aa", tarfile.LNKTYPE, "etc/zz"),
        ],
        {},
    )
    normalize_layer(src, tmp_path / "n.tar", EPOCH)
    with tarfile.open(tmp_path / "n.tar") as tar:
        kinds = {m.name: (m.type, m.linkname) for m in tar.getmembers()}
    assert kinds == {"etc/aa": (tarfile.SYMTYPE, "/nowhere"), "etc/zz": (tarfile.LNKTYPE, "etc/aa")}


def test_a_hard_link_whose_target_is_missing_is_a_clear_error(tmp_path: Path) -> None:
    src = _tar(tmp_path / "layer.tar", [_entry("usr/bin/a", tarfile.LNKTYPE, "usr/bin/gone")], {})
    message = r"'usr/bin/a' points to 'usr/bin/gone', which is not in the layer"
    with pytest.raises(SnapshotError, match=message):
        normalize_layer(src, tmp_path / "n.tar", EPOCH)
    assert not (tmp_path / "n.tar").exists()


@pytest.mark.parametrize(
    "name",
    ["../escape", "usr/../../etc/passwd", "usr/./bin/x", "usr//bin/x", "usr/bin/.."],
)
def test_names_that_are_not_canonical_are_refused(tmp_path: Path, name: str) -> None:
    src = _tar(tmp_path / "layer.tar", [_entry(name)], {name: b"x"})
    with pytest.raises(SnapshotError, match="not a canonical path"):
        normalize_layer(src, tmp_path / "n.tar", EPOCH)
    assert not (tmp_path / "n.tar").exists()


def test_a_hard_link_target_that_is_not_canonical_is_refused(tmp_path: Path) -> None:
    src = _tar(
        tmp_path / "layer.tar",
        [_entry("a"), _entry("b", tarfile.LNKTYPE, "x/../a")],
        {"a": b"x"},
    )
    with pytest.raises(SnapshotError, match=r"hard link target 'x/\.\./a'"):
        normalize_layer(src, tmp_path / "n.tar", EPOCH)
