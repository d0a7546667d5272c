"""The one reader of layer tars: what each entry of a layer means, and the tree a stack makes.

A layer (OCI image spec, "Representing Changes"; the classic builder and BuildKit write the same)
holds files, folders, symbolic links, hard links (to an earlier entry of the same layer) and
devices, and two kinds of deletion:

- a whiteout ``.wh.NAME`` deletes ``NAME``, and everything under it, from the layers below;
- an opaque marker ``.wh..wh..opq`` in a folder deletes everything under that folder from the
  layers below (the folder itself stays).

A deletion acts on the layers below only, never on entries of its own layer; a file that takes
the place of a folder replaces the folder's whole tree, and a folder that takes the place of a
file replaces the file. Every reader of layers goes through here: the snapshot (what the layers
above delete, ``Deletions``), the conformance checks and the SBOM (the merged ``FileTree``), and
``outdated`` (the top-most layer that holds one path).
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import IO, Final, Generic, Literal, TypeVar

X = TypeVar("X")
WHITEOUT: Final = ".wh."
OPAQUE: Final = ".wh..wh..opq"
XATTR: Final = "SCHILY.xattr."
Kind = Literal["file", "dir", "symlink", "hardlink", "other"]
# What a reader makes of one regular file while the layer streams past: (name, header, content).
Look = Callable[[str, tarfile.TarInfo, IO[bytes]], X | None]


def clean_name(name: str) -> str:
    """A member name without leading ``./`` or ``/`` and without a trailing ``/``."""
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/").rstrip("/")


def absolute_name(name: str) -> str:
    """A member name as the absolute path it has in the container (``usr/x`` → ``/usr/x``)."""
    return str(PurePosixPath("/", clean_name(name)))


def xattrs_of(member: tarfile.TarInfo) -> tuple[tuple[str, str], ...]:
    """A member's extended attributes (its ``SCHILY.xattr.*`` PAX records), sorted: the only PAX
    records a snapshot keeps."""
    return tuple(sorted((k, v) for k, v in member.pax_headers.items() if k.startswith(XATTR)))


def is_whiteout(base: str) -> bool:
    """True for the last part of a whiteout's or an opaque marker's name."""
    return base.startswith(WHITEOUT)


@dataclass(frozen=True)
class Whiteout:
    """A deletion from the layers below: ``path`` and everything under it, or (``opaque``)
    everything under the folder ``path`` ("" is the root)."""

    path: str
    opaque: bool = False

    def hides(self, name: str) -> bool:
        """True when this deletion removes ``name`` (a clean name) of a lower layer."""
        if self.opaque:
            return name.startswith(f"{self.path}/") if self.path else name != ""
        return name == self.path or name.startswith(f"{self.path}/")


def whiteout(name: str) -> Whiteout | None:
    """The deletion a clean entry name stands for; None for an ordinary entry."""
    parent, _, base = name.rpartition("/")
    if base == OPAQUE:
        return Whiteout(parent, opaque=True)
    if is_whiteout(base):
        gone = base[len(WHITEOUT) :]
        return Whiteout(f"{parent}/{gone}" if parent else gone)
    return None


@dataclass(frozen=True)
class Deletions:
    """What the layers above one layer delete from it: the deleted paths, and the prefixes
    (ending in "/", "" for the root) under which everything is deleted."""

    paths: frozenset[str] = frozenset()
    under: frozenset[str] = frozenset()

    def hides(self, name: str) -> bool:
        """True when ``name`` is deleted: looked up by each of its folders, so the cost is its
        depth, not the number of deletions."""
        if name in self.paths or "" in self.under:
            return True
        slash = name.find("/")
        while slash != -1:
            if name[: slash + 1] in self.under:
                return True
            slash = name.find("/", slash + 1)
        return False

    def plus(self, names: Iterable[str]) -> Deletions:
        """These deletions and those of a layer with the entries ``names`` (clean names)."""
        return self.plus_whiteouts(w for w in map(whiteout, names) if w is not None)

    def plus_whiteouts(self, deletions: Iterable[Whiteout]) -> Deletions:
        """These deletions and ``deletions``."""
        paths, under = set(self.paths), set(self.under)
        for gone in deletions:
            if not gone.opaque:
                paths.add(gone.path)
            under.add(f"{gone.path}/" if gone.path else "")
        return Deletions(frozenset(paths), frozenset(under))


@dataclass(frozen=True, kw_only=True)
class Entry(Generic[X]):
    """One entry of a layer, deletions aside."""

    path: str  # clean name: "usr/bin/x"
    kind: Kind
    mode: int
    uid: int
    gid: int
    size: int
    linkname: str = ""  # a symlink's target as written; a hard link's: the entry's clean name
    seen: X | None = None  # what the reader's look made of a file (a hard link: of its target)
    xattrs: tuple[tuple[str, str], ...] = ()  # its SCHILY.xattr.* PAX records, sorted


@dataclass(frozen=True, kw_only=True)
class LayerEntries(Generic[X]):
    entries: list[Entry[X]] = field(default_factory=list)
    whiteouts: list[Whiteout] = field(default_factory=list)


def _kind(member: tarfile.TarInfo) -> Kind:
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    return "other"


class LayerTooLarge(ValueError):
    """A layer with more entries, or more bytes in them, than the reader was told to allow."""


def read_layer(
    stream: IO[bytes],
    look: Look[X] | None = None,
    *,
    max_entries: int | None = None,
    max_bytes: int | None = None,
) -> LayerEntries[X]:
    """Read one layer tar (plain or compressed) from ``stream``, once, in order. ``look`` is
    called with each regular file's content stream and what it returns is kept with the entry
    (a hard link gets its target's). A layer from elsewhere (a registry) is read only as far as
    ``max_entries`` and ``max_bytes`` (the sizes its entries declare) allow: LayerTooLarge."""
    layer: LayerEntries[X] = LayerEntries()
    seen: dict[str, X | None] = {}
    declared = 0
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for count, member in enumerate(tar, 1):
            declared += member.size
            if (max_entries is not None and count > max_entries) or (
                max_bytes is not None and declared > max_bytes
            ):
                raise LayerTooLarge(f"more than {max_entries} entries or {max_bytes} bytes")
            name = clean_name(member.name)
            if name in ("", "."):
                continue
            deletion = whiteout(name)
            if deletion is not None:
                layer.whiteouts.append(deletion)
                continue
            kind = _kind(member)
            linkname, found = member.linkname, None
            if kind == "file" and look is not None:
                content = tar.extractfile(member)
                found = seen[name] = look(name, member, content) if content is not None else None
            elif kind == "hardlink":
                linkname = clean_name(member.linkname)
                found = seen.get(linkname)
            layer.entries.append(
                Entry(
                    path=name, kind=kind, mode=member.mode, uid=member.uid, gid=member.gid,
                    size=member.size, linkname=linkname, seen=found, xattrs=xattrs_of(member),
                )
            )  # fmt: skip
    return layer


class FileTree(Generic[X]):
    """The file system a stack of layers makes: clean path → the entry the top-most layer that
    holds it wrote.

    Beside the entries, each folder's children are indexed (folders a layer does not list
    included), so that a deletion visits only what it removes: building the tree is linear in
    the number of entries, whiteouts and replaced folders included.
    """

    def __init__(self, layers: Iterable[LayerEntries[X]] = ()) -> None:
        self.entries: dict[str, Entry[X]] = {}
        # folder ("" is the root) → the paths right under it that are entries or lead to one
        self._children: dict[str, set[str]] = {}
        for layer in layers:
            self.add(layer)

    def _link(self, path: str) -> None:
        """Index ``path`` under its folder, and each folder under its own, up to the root."""
        while path:
            parent = path.rpartition("/")[0]
            children = self._children.setdefault(parent, set())
            if path in children:
                return  # its folders are indexed already
            children.add(path)
            path = parent

    def _remove_under(self, folder: str) -> None:
        """Remove every path under ``folder`` (not the folder itself)."""
        pending = [folder]
        while pending:
            for child in self._children.pop(pending.pop(), ()):
                self.entries.pop(child, None)
                pending.append(child)

    def _delete(self, gone: Whiteout) -> None:
        """Remove what ``gone`` hides (Whiteout.hides), visiting nothing else."""
        if not gone.opaque and not gone.path:
            return  # a whiteout of nothing (".wh." alone) hides no entry
        self._remove_under(gone.path)
        if not gone.opaque:
            self.entries.pop(gone.path, None)
            self._children.get(gone.path.rpartition("/")[0], set()).discard(gone.path)

    def add(self, layer: LayerEntries[X]) -> None:
        """Put ``layer`` on top: its deletions first (they act on the layers below), then its
        entries."""
        for gone in layer.whiteouts:
            self._delete(gone)
        for entry in layer.entries:
            old = self.entries.get(entry.path)
            if old is not None and old.kind == "dir" and entry.kind != "dir":
                self._delete(Whiteout(entry.path))  # a file replaces a folder's whole tree
            self.entries[entry.path] = entry
            self._link(entry.path)

    def resolve(self, path: str, depth: int = 0) -> str | None:
        """``path`` with the symbolic links among its folders (and itself) followed; None when
        nothing is there."""
        if depth > 16:
            return None
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            here = "/".join(parts[:i])
            entry = self.entries.get(here)
            if entry is None:
                if i == len(parts):
                    return None
                continue  # a layer need not list every parent folder
            if entry.kind == "symlink":
                target = entry.linkname
                if not target.startswith("/"):
                    target = posixpath.join(posixpath.dirname(here), target)
                rest = posixpath.normpath("/".join([target, *parts[i:]])).lstrip("/")
                return self.resolve("" if rest == "." else rest, depth + 1)
        return path
