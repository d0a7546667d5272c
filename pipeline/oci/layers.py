"""Layer tars: canonical member names, and the reproducible rewrite every snapshot gets.

``normalize_layer`` makes the same bytes from the same files whatever engine or builder wrote
the layer: entries sorted (whiteouts first among their siblings, so an opaque marker applies
before the directory's new entries), mtimes clamped to SOURCE_DATE_EPOCH, owner names dropped,
only ``SCHILY.xattr.*`` PAX records kept, hard links pointing backwards.
"""

from __future__ import annotations

import copy
import tarfile
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Final

from ..digests import HashingWriter

WHITEOUT: Final = ".wh."
OPAQUE: Final = ".wh..wh..opq"


def clean_name(name: str) -> str:
    """A member name without leading ``./`` or ``/`` and without a trailing ``/``."""
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/").rstrip("/")


def absolute_name(name: str) -> str:
    """A member name as the absolute path it has in the container (``usr/x`` → ``/usr/x``)."""
    return str(PurePosixPath("/", clean_name(name)))


def sort_key(name: str) -> tuple[tuple[int, str], ...]:
    return tuple((0 if part.startswith(WHITEOUT) else 1, part) for part in name.split("/"))


def layer_names(tar: Path) -> list[str]:
    """The clean names of a layer tar's entries, in order."""
    with tarfile.open(tar, "r:") as layer:
        names = (clean_name(m.name) for m in layer)
        return [name for name in names if name not in ("", ".")]


def apply_names(tree: set[str], names: Iterable[str]) -> None:
    """Apply one layer's entries to ``tree`` (the paths that exist), as an engine applies the
    layer: its whiteouts hide what the layers below have, then its own entries are added."""
    names = list(names)
    hidden: list[str] = []  # prefixes whose contents go
    for name in names:
        parent, _, base = name.rpartition("/")
        if base == OPAQUE:
            hidden.append(f"{parent}/" if parent else "")
        elif base.startswith(WHITEOUT):
            gone = f"{parent}/{base[len(WHITEOUT) :]}" if parent else base[len(WHITEOUT) :]
            tree.discard(gone)
            hidden.append(f"{gone}/")
    for prefix in hidden:
        for path in [p for p in tree if p.startswith(prefix)]:
            tree.discard(path)
    for name in names:
        if not name.rpartition("/")[2].startswith(WHITEOUT):
            parts = name.split("/")
            tree.update("/".join(parts[: i + 1]) for i in range(len(parts)))


def lower_trees(tars: Sequence[Path]) -> list[frozenset[str]]:
    """For each layer of an image (in order), the paths that exist below it."""
    tree: set[str] = set()
    trees = []
    for tar in tars:
        trees.append(frozenset(tree))
        apply_names(tree, layer_names(tar))
    return trees


def redundant_whiteout(name: str, lower: Collection[str]) -> bool:
    """True for a whiteout that hides nothing: an opaque marker of a directory that has no
    contents below, or a ``.wh.<name>`` for a name that does not exist below."""
    parent, _, base = name.rpartition("/")
    if base == OPAQUE:
        prefix = f"{parent}/" if parent else ""
        return not any(path.startswith(prefix) for path in lower)
    if base.startswith(WHITEOUT):
        gone = f"{parent}/{base[len(WHITEOUT) :]}" if parent else base[len(WHITEOUT) :]
        return gone not in lower
    return False


def normalize_layer(
    source: Path, dest: Path, epoch: int, lower: Collection[str] | None = None
) -> tuple[str, int]:
    """Rewrite a layer tar reproducibly; return (diff_id, size) of the result.

    ``lower``, the paths that exist below this layer (``lower_trees``), lets whiteouts that hide
    nothing be left out. Overlay-backed engines write opaque markers for directories a RUN step
    created new (31 in the Python image's package layer); they mean nothing, and Docker 26 did
    not always honour them when the snapshot's Dockerfile ADDs the layer: rebuilt from the arm64
    branch, its image kept them as literal ``.wh..wh..opq`` files (Docker 20.10 did not).
    """
    with tarfile.open(source, "r:") as src:
        members = [m for m in src.getmembers() if clean_name(m.name) not in ("", ".")]
        for m in members:
            m.name = clean_name(m.name)
            if m.islnk():
                m.linkname = clean_name(m.linkname)
        if lower is not None:
            members = [m for m in members if not redundant_whiteout(m.name, lower)]
        by_name = {m.name: m for m in members}
        data_from = {m.name: m for m in members if m.isreg()}
        # Hard links must point backwards in the archive; after sorting, the first name of each
        # link group carries the data and the others link to it.
        groups: dict[str, list[tarfile.TarInfo]] = {}
        for m in members:
            if m.islnk() and m.linkname in by_name:
                groups.setdefault(m.linkname, [by_name[m.linkname]]).append(m)
        for target_name, group in groups.items():
            group.sort(key=lambda m: sort_key(m.name))
            leader = group[0]
            original = by_name[target_name]
            if leader is not original:
                data_from[leader.name] = copy.copy(original)  # original becomes a link below
                leader.type, leader.size, leader.linkname = tarfile.REGTYPE, original.size, ""
                for m in group[1:]:
                    m.type, m.size, m.linkname = tarfile.LNKTYPE, 0, leader.name
        members.sort(key=lambda m: sort_key(m.name))

        with dest.open("wb") as raw:
            out = HashingWriter(raw)
            sink: Any = out
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for m in members:
                    info = tarfile.TarInfo(m.name + ("/" if m.isdir() else ""))
                    info.type = m.type
                    info.mode = m.mode
                    info.uid, info.gid = m.uid, m.gid
                    info.uname = info.gname = ""
                    info.mtime = min(int(m.mtime), epoch)
                    info.linkname = m.linkname
                    info.devmajor, info.devminor = m.devmajor, m.devminor
                    info.pax_headers = {
                        k: v for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")
                    }
                    if info.isreg():
                        info.size = data_from[m.name].size
                        fileobj = src.extractfile(data_from[m.name])
                        tar.addfile(info, fileobj)
                    else:
                        info.size = 0
                        tar.addfile(info)
            out.flush()
        return "sha256:" + out.hexdigest, out.count


def is_empty_layer(tar: Path) -> bool:
    """True when a layer tar has no entries: applying it changes no file.

    BuildKit commits one for a ``WORKDIR`` whose directory already exists (the classic builder
    commits none), so a snapshot leaves such layers out to come out the same from both.
    """
    with tarfile.open(tar, "r:") as layer:
        return layer.next() is None
