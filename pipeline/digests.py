"""sha256, the one way every stage names and checks what it reads and writes.

Files are hashed in chunks (never read whole), bytes and JSON documents in one call, and a
stream is hashed as it is written by wrapping its file object in ``HashingWriter``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import IO, Any, Final

CHUNK: Final = 1 << 20  # the read size everywhere a file is streamed


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sha256_bytes(data: bytes) -> str:
    """``sha256:<hex>`` of some bytes: how registries and image configs name content."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_json(value: Any) -> str:
    """``sha256:<hex>`` of a JSON value in canonical form (sorted keys, no spaces)."""
    return sha256_bytes(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


class HashingWriter:
    """A write-only file object that hashes and counts what passes through to ``raw``."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.count += len(data)
        self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()

    @property
    def hexdigest(self) -> str:
        return self.digest.hexdigest()
