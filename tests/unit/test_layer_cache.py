"""Compressed layers are cached by the tar's digest: same bytes as compressing again."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

import pytest

from pipeline.orchestrate import Run
from pipeline.settings import Settings
from pipeline.snapshot import compress_layer, compress_xz, decompressed_digest, warm_layer_cache


def _tar(path: Path) -> tuple[Path, str]:
    data = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(4_000))
    path.write_bytes(data)
    return path, "sha256:" + hashlib.sha256(data).hexdigest()


def test_a_cached_layer_is_byte_identical_to_a_fresh_one(tmp_path: Path) -> None:
    tar, diff_id = _tar(tmp_path / "layer.tar")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    sha, size, _ = compress_xz(tar, fresh)
    cache = tmp_path / "cache"
    for name in ("one", "two"):
        out = tmp_path / name
        out.mkdir()
        assert compress_layer(tar, diff_id, out, cache) == (sha, size)
        assert (out / f"{sha}.tar.xz").read_bytes() == (fresh / f"{sha}.tar.xz").read_bytes()
    # the second snapshot got a link to the cached file, not a second compression
    assert os.stat(tmp_path / "two" / f"{sha}.tar.xz").st_nlink >= 2
    assert len(list(cache.rglob("*.tar.xz"))) == 1


def test_without_a_cache_nothing_is_kept(tmp_path: Path) -> None:
    tar, diff_id = _tar(tmp_path / "layer.tar")
    out = tmp_path / "out"
    out.mkdir()
    sha, _ = compress_layer(tar, diff_id, out, None)
    assert [p.name for p in out.iterdir()] == [f"{sha}.tar.xz"]


def test_every_work_directory_uses_the_one_layer_cache_beside_the_bases(tmp_path: Path) -> None:
    """A runtime snapshotted again from another work directory (a second checkout, another
    test, `--work` elsewhere) finds its layers compressed already."""
    cache = tmp_path / "user-cache"
    runs = [
        Run.open(
            Settings.from_environ(
                {"LAMBDA_IMAGES_CACHE": str(cache), "LAMBDA_IMAGES_WORK": str(tmp_path / name)}
            )
        )
        for name in ("one", "two")
    ]
    assert runs[0].work.root != runs[1].work.root
    assert runs[0].layer_cache == runs[1].layer_cache == cache / "layers"


class _Image:
    id = "sha256:" + "ab" * 32


class _Images:
    def get(self, name: str) -> _Image:
        return _Image()


class _Client:
    """Enough of an engine client for warm_layer_cache to claim an image; the export itself
    fails (there is no engine), which warming, a head start only, shrugs off."""

    images = _Images()


def test_warming_killed_midway_is_done_again_by_the_next_process(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    hexid = "ab" * 32
    # What a process killed while warming leaves: its lock file and staging folder, no marker.
    (cache / "warmed").mkdir(parents=True)
    (cache / "warmed" / f".{hexid}.lock").touch()
    (cache / f".warm-{hexid}" / "layer-0.tar").parent.mkdir()
    (cache / f".warm-{hexid}" / "layer-0.tar").write_bytes(b"half")
    for _ in range(2):  # claimed again, and again after a failed attempt
        thread = warm_layer_cache(_Client(), "base", cache, 0)
        assert thread is not None
        thread.join(30)
        assert not (cache / f".warm-{hexid}").exists()
        assert not (cache / "warmed" / hexid).exists()


def test_warming_is_left_to_the_process_doing_it_or_done(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    lock = cache / "warmed" / f".{'ab' * 32}.lock"
    lock.parent.mkdir(parents=True)
    held = os.open(lock, os.O_CREAT | os.O_WRONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process is warming it
        assert warm_layer_cache(_Client(), "base", cache, 0) is None
    finally:
        os.close(held)
    (cache / "warmed" / ("ab" * 32)).touch()  # warmed before
    assert warm_layer_cache(_Client(), "base", cache, 0) is None


@pytest.mark.parametrize("damage", ["a flipped byte", "another layer's bytes", "truncated"])
def test_a_damaged_cache_entry_is_never_used_and_is_compressed_again(
    tmp_path: Path, damage: str
) -> None:
    """The cache is named by what each file decompresses to, and checked on every reuse."""
    tar, diff_id = _tar(tmp_path / "layer.tar")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    sha, size, _ = compress_xz(tar, fresh)
    cache = tmp_path / "cache"
    (tmp_path / "one").mkdir()
    compress_layer(tar, diff_id, tmp_path / "one", cache)
    [cached] = cache.rglob("*.tar.xz")
    data = cached.read_bytes()
    cached.unlink()  # the snapshot's own file is a hard link to it: leave that one alone
    if damage == "a flipped byte":
        cached.write_bytes(data[:200] + bytes([data[200] ^ 1]) + data[201:])
    elif damage == "truncated":
        cached.write_bytes(data[: len(data) // 2])
    else:
        other = tmp_path / "other.tar"
        other.write_bytes(b"another layer" * 1000)
        _, _, made = compress_xz(other, fresh)
        cached.write_bytes(made.read_bytes())
    (tmp_path / "two").mkdir()
    assert compress_layer(tar, diff_id, tmp_path / "two", cache) == (sha, size)
    assert (tmp_path / "two" / f"{sha}.tar.xz").read_bytes() == (
        fresh / f"{sha}.tar.xz"
    ).read_bytes()
    assert cached.read_bytes() == (fresh / f"{sha}.tar.xz").read_bytes()  # repaired
    assert decompressed_digest(cached) == diff_id
