"""Layer tars: canonical member names, and the reproducible rewrite every snapshot gets.

``normalize_layer`` makes the same bytes from the same files whatever engine or builder wrote
the layer: entries sorted (whiteouts first among their siblings, so an opaque marker applies
before the directory's new entries), mtimes clamped to SOURCE_DATE_EPOCH, owner names dropped,
only ``SCHILY.xattr.*`` PAX records kept, hard links pointing backwards, and a folder entry that
changes nothing (``unchanged_folders``) left out.
"""

from __future__ import annotations

import copy
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..digests import HashingWriter
from ..errors import SnapshotError
from .tree import (
    Deletions,
    Entry,
    FileTree,
    LayerEntries,
    clean_name,
    is_whiteout,
    read_layer,
    whiteout,
    xattrs_of,
)


def canonical_name(name: str, layer: Path, what: str = "entry") -> str:
    """``clean_name`` of a member name that must already be canonical: no ``..``, ``.`` or
    empty part (``a/../b``, ``a/./b``, ``a//b``), which an engine's tar writer never produces
    and which would write outside of, or ambiguously within, the image's filesystem."""
    clean = clean_name(name)
    if clean in ("", "."):
        return clean
    if any(part in ("", ".", "..") for part in clean.split("/")):
        msg = (
            f"{layer}: layer {what} {name!r} is not a canonical path (it has a '..', '.' or "
            "empty part); such a layer is refused rather than rewritten"
        )
        raise SnapshotError(msg)
    return clean


def sort_key(name: str) -> tuple[tuple[int, str], ...]:
    return tuple((0 if is_whiteout(part) else 1, part) for part in name.split("/"))


def layer_names(tar: Path) -> list[str]:
    """The clean names of a layer tar's entries, in order."""
    with tarfile.open(tar, "r:") as layer:
        names = (clean_name(m.name) for m in layer)
        return [name for name in names if name not in ("", ".")]


def deletions_above(tars: Sequence[Path]) -> list[Deletions]:
    """For each layer of an image (in order), what the layers above it delete.

    A snapshot applies these to the layers themselves: a file that a later layer deletes is left
    out of the layer that has it, and no whiteout is written. BuildKit's ``ADD`` of a layer tar
    does not replay whiteouts (it writes ``.wh.*`` as files and keeps what they hide), the
    classic builder does; a snapshot without whiteouts gives the same tree with either.
    """
    above = [Deletions()]
    for tar in reversed(tars[1:]):
        above.append(above[-1].plus(layer_names(tar)))
    return above[::-1]


def unchanged_folders(tars: Sequence[Path]) -> list[frozenset[str]]:
    """For each layer of an image (in order), its folder entries that change nothing: a folder
    the layers below already hold, with the same permissions, owner and extended attributes,
    that has nothing under it in this layer.

    Engines disagree on those. BuildKit's differ lists ``etc/`` in the layer of a ``RUN`` step
    that wrote nothing in it (the step's ``/etc/hosts`` mount point, removed again, touched the
    folder's time); the classic builder leaves it out. The classic builder lists ``tmp/`` for a
    step that made and removed a file there; BuildKit does not. A snapshot leaves them out, so
    it is the same with either. A folder that the layer's own whiteouts delete below is kept:
    there, it is made anew.
    """
    below: FileTree[None] = FileTree()
    unchanged: list[frozenset[str]] = []
    for tar in tars:
        with tar.open("rb") as stream:
            layer: LayerEntries[None] = read_layer(stream)
        own = Deletions().plus_whiteouts(layer.whiteouts)
        parents = {_parent(entry.path) for entry in layer.entries}
        parents |= {w.path if w.opaque else _parent(w.path) for w in layer.whiteouts}
        for name in list(parents):  # every folder above each parent too
            while name and (name := _parent(name)) not in parents:
                parents.add(name)
        same = set()
        for entry in layer.entries:
            if entry.kind != "dir" or entry.path in parents or own.hides(entry.path):
                continue
            old = below.entries.get(entry.path)
            if old is not None and old.kind == "dir" and _folder(old) == _folder(entry):
                same.add(entry.path)
        unchanged.append(frozenset(same))
        below.add(layer)
    return unchanged


def _folder(entry: Entry[None]) -> tuple[object, ...]:
    """What a folder entry sets, as a normalized layer writes it: permission bits (Docker's tar
    writer adds the file type's bits to the mode, other writers do not), owner, extended
    attributes; its time is clamped anyway."""
    return entry.mode & 0o7777, entry.uid, entry.gid, entry.xattrs


def _parent(name: str) -> str:
    return name.rpartition("/")[0]


def normalize_layer(
    source: Path,
    dest: Path,
    epoch: int,
    above: Deletions | None = None,
    unchanged: frozenset[str] = frozenset(),
) -> tuple[str, int]:
    """Rewrite a layer tar reproducibly; return (diff_id, size) of the result.

    ``above``, what the layers above delete (``deletions_above``), folds deletions into the
    layers: the entries it hides are left out, and so is every whiteout, since what a whiteout
    hides is left out of the layers below it. (Overlay-backed engines also write opaque markers
    for directories a RUN step created new, 31 in the Python image's package layer; they go too.)
    Without ``above`` the layer keeps its whiteouts. The folders named in ``unchanged``
    (``unchanged_folders``) are left out.
    """
    with tarfile.open(source, "r:") as src:
        members = [m for m in src.getmembers() if canonical_name(m.name, source) not in ("", ".")]
        for m in members:
            m.name = canonical_name(m.name, source)
            if m.islnk():
                m.linkname = canonical_name(m.linkname, source, "hard link target")
        every = {m.name: m for m in members}  # a link's data may come from an entry left out
        if above is not None:
            members = [m for m in members if whiteout(m.name) is None and not above.hides(m.name)]
        members = [m for m in members if not (m.isdir() and m.name in unchanged)]
        by_name = {m.name: m for m in members}
        data_from = {m.name: m for m in members if m.isreg()}
        # Hard links must point backwards in the archive; after sorting, the first name of each
        # link group carries the data and the others link to it.
        # A hard link may join a symlink (Docker's tar writer links every name of one inode,
        # whatever its type): the first name then becomes that symlink, not a file.
        groups: dict[str, list[tarfile.TarInfo]] = {}
        for m in members:
            if not m.islnk():
                continue
            target = every.get(m.linkname)
            if target is None or target.islnk() or target.isdir():
                msg = (
                    f"{source}: hard link {m.name!r} points to {m.linkname!r}, which is "
                    f"{'not in the layer' if target is None else 'not a file'}; the layer is "
                    "damaged or was not written by an engine"
                )
                raise SnapshotError(msg)
            kept = [by_name[m.linkname]] if m.linkname in by_name else []
            groups.setdefault(m.linkname, kept).append(m)
        for target_name, group in groups.items():
            group.sort(key=lambda m: sort_key(m.name))
            leader = group[0]
            original = every[target_name]
            if leader is not original:
                if original.isreg():
                    data_from[leader.name] = copy.copy(original)  # original becomes a link below
                leader.type, leader.size = original.type, original.size if original.isreg() else 0
                leader.linkname = original.linkname if original.issym() else ""
                leader.devmajor, leader.devminor = original.devmajor, original.devminor
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
                    info.pax_headers = dict(xattrs_of(m))
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
