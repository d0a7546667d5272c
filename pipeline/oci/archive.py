"""One reader for ``docker save`` archives, in both layouts engines write.

- Docker < 25 (the legacy layout): ``<id>/layer.tar`` per layer (a duplicate layer is a symlink
  to another one), ``<config id>.json``, and ``manifest.json``.
- Docker >= 25 (the OCI image layout): every blob under ``blobs/sha256/<hex>``, ``index.json``,
  ``oci-layout``, and a ``manifest.json`` whose ``Config`` and ``Layers`` point into ``blobs/``,
  with a ``LayerSources`` entry per layer (https://github.com/moby/moby/pull/44598).

Both are read the same way: by what ``manifest.json`` says, never by guessing file names. The
archive is read as a stream, once; since ``manifest.json`` may come after the layers, every
member is kept by its path and sorted out at the end (layers by their tar header, JSON by its
first byte), and the caller decides what keeping a layer means (scan it, copy it to disk).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import posixpath
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Final, Generic, TypeVar

import docker.errors
import requests

from ..errors import EngineError
from .tree import clean_name

L = TypeVar("L")
BLOCK: Final = 512
JSON_MAX_BYTES: Final = 64 * 1024 * 1024  # configs and manifests are small; a larger one is not
GZIP_MAGIC: Final = b"\x1f\x8b"
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
# Layer media types a registry (and Lambda) will not take from a push.
FOREIGN_MARKERS: Final = ("foreign", "nondistributable")


class ArchiveError(Exception):
    """The archive is not a ``docker save`` archive of one image; the message says why."""


@dataclass(frozen=True, kw_only=True)
class SavedImage(Generic[L]):
    config: dict[str, Any]  # the image config (architecture, os, config.Entrypoint, rootfs…)
    manifest: dict[str, Any]  # the image's entry in manifest.json
    layers: list[L]  # what the caller made of each layer, bottom first (repeats kept)
    layout: str  # "oci" (Docker >= 25) or "legacy"

    def foreign_layers(self) -> list[str]:
        """Diff IDs of layers marked non-distributable (registries refuse to take them)."""
        sources = self.manifest.get("LayerSources") or {}
        return sorted(
            diff_id
            for diff_id, source in sources.items()
            if any(m in str((source or {}).get("mediaType", "")) for m in FOREIGN_MARKERS)
        )


class _Prefixed(io.RawIOBase):
    """A stream that yields ``head`` and then the rest of ``tail`` (to peek without seeking)."""

    def __init__(self, head: bytes, tail: IO[bytes]) -> None:
        self._head, self._tail = head, tail

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._tail.read(len(b))
        b[: len(data)] = data
        return len(data)


class ChunkStream(io.RawIOBase):
    """A file object over an iterable of byte chunks (what ``image.save()`` yields)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buffer))
        b[:n], self._buffer = self._buffer[:n], self._buffer[n:]
        return n


def _is_tar(head: bytes) -> bool:
    # ustar magic at offset 257 (POSIX and GNU); an empty layer is nothing but zero blocks.
    return len(head) == BLOCK and (head[257:262] == b"ustar" or head == bytes(BLOCK))


def read_saved(stream: IO[bytes], on_layer: Callable[[str, IO[bytes]], L]) -> SavedImage[L]:
    """Read a ``docker save`` archive of one image from ``stream``.

    ``on_layer(path, tar_stream)`` is called once per layer file in the archive (in archive
    order, with the uncompressed tar) and must consume what it needs before returning.
    """
    made: dict[str, L] = {}
    documents: dict[str, Any] = {}
    links: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                name = clean_name(member.name) or "."
                if member.issym() or member.islnk():
                    base = posixpath.dirname(name) if member.issym() else ""
                    links[name] = posixpath.normpath(posixpath.join(base, member.linkname))
                    continue
                f = archive.extractfile(member) if member.isreg() else None
                if f is None:
                    continue
                head = f.read(BLOCK)
                if head[:2] == GZIP_MAGIC:
                    with gzip.GzipFile(fileobj=_Prefixed(head, f), mode="rb") as plain:
                        made[name] = on_layer(name, plain)  # type: ignore[arg-type]
                elif head[:4] == ZSTD_MAGIC:
                    raise ArchiveError(f"{name} is zstd-compressed, which is not supported")
                elif _is_tar(head):
                    made[name] = on_layer(name, io.BufferedReader(_Prefixed(head, f)))
                elif head.lstrip()[:1] in (b"{", b"[") and member.size <= JSON_MAX_BYTES:
                    with contextlib.suppress(ValueError):  # not a document: ignored
                        documents[name] = json.loads(head + f.read())
    except tarfile.TarError as exc:
        raise ArchiveError(f"not a readable tar archive: {exc}") from None
    manifest = documents.get("manifest.json")
    if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
        count = len(manifest) if isinstance(manifest, list) else "no"
        raise ArchiveError(f"manifest.json describes {count} images, expected one")
    entry: dict[str, Any] = manifest[0]

    def resolve(path: str) -> str:
        seen = 0
        path = posixpath.normpath(path)
        while path in links and seen < 16:
            path, seen = links[path], seen + 1
        return path

    config = documents.get(resolve(str(entry.get("Config", ""))))
    if not isinstance(config, dict):
        raise ArchiveError(
            f"manifest.json names config {entry.get('Config')!r}, not in the archive"
        )
    layers = []
    for path in entry.get("Layers") or []:
        key = resolve(str(path))
        if key not in made:
            raise ArchiveError(f"manifest.json names layer {path!r}, not in the archive")
        layers.append(made[key])
    layout = "oci" if "oci-layout" in documents or "index.json" in documents else "legacy"
    return SavedImage(config=config, manifest=entry, layers=layers, layout=layout)


def read_engine_image(
    client: Any, image: str, on_layer: Callable[[str, IO[bytes]], L]
) -> SavedImage[L]:
    """``docker save`` one image from the engine and read it as it streams (nothing on disk)."""
    try:
        chunks = client.images.get(image).save(named=False)
    except docker.errors.ImageNotFound:
        raise EngineError(f"no image {image!r} in the Docker Engine; build it first") from None
    except docker.errors.APIError as exc:
        raise EngineError(f"exporting {image}: {exc.explanation or exc}") from None
    stream = io.BufferedReader(ChunkStream(chunks), buffer_size=1 << 20)
    try:
        return read_saved(stream, on_layer)
    except ArchiveError as exc:
        raise EngineError(f"reading `docker save {image}`: {exc}") from None
    except requests.exceptions.RequestException as exc:
        raise EngineError(f"reading `docker save {image}`: {exc}") from None
