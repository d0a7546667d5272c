"""What a user of an image sees of it: the file tree of a container made from it, and its config.

Shared by the tests that rebuild an image from a branch or pull it from a registry and compare it
with the pipeline's own image.
"""

from __future__ import annotations

import hashlib
import tarfile
from typing import Any


def file_tree(client: Any, image: str) -> dict[str, tuple[Any, ...]]:
    """Every path of an image's filesystem: type, mode, owner, size, link target, content hash."""
    container = client.containers.create(image, entrypoint=["/nonexistent"])
    tree: dict[str, tuple[Any, ...]] = {}
    try:
        stream = _Chunks(container.export(chunk_size=1 << 20))
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            for m in tar:
                digest = ""
                if m.isreg():
                    f = tar.extractfile(m)
                    digest = hashlib.sha256(f.read()).hexdigest() if f else ""
                tree[m.name.rstrip("/")] = (
                    m.type,
                    m.mode,
                    m.uid,
                    m.gid,
                    m.size,
                    m.linkname,
                    digest,
                )
    finally:
        container.remove(force=True)
    return tree


class _Chunks:
    """A read()-able view of a generator of byte chunks."""

    def __init__(self, chunks: Any) -> None:
        self.chunks, self.buffer = iter(chunks), b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            try:
                self.buffer += next(self.chunks)
            except StopIteration:
                break
        if size < 0:
            out, self.buffer = self.buffer, b""
        else:
            out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out


def config_of(client: Any, image: str) -> dict[str, Any]:
    """The parts of an image's config a function sees."""
    c = client.images.get(image).attrs["Config"]
    return {k: c.get(k) for k in ("Env", "Entrypoint", "Cmd", "WorkingDir")}


def uname_in(client: Any, image: str) -> str:
    out: bytes = client.containers.run(image, entrypoint=["uname", "-m"], remove=True)
    return out.decode().strip()
