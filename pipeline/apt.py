"""Debian archives: which ones a Debian base uses, their state, and the versions they offer.

A Debian base comes from its suite, the suite's ``-updates`` and its ``-security`` archive (plus
any ``extra_archives`` of runtimes.yaml). The *state* of an archive, for one architecture, is
the sha256 of each package index (``<component>/binary-<arch>/Packages``, ``…/binary-all/…``)
as its signed ``InRelease`` lists them (``Release`` for an unsigned repository). It changes
exactly when a package is added, removed or upgraded — not when the archive is merely re-signed
— so it is what a base's identity is made of: a new state gives a new base and rebuilt images,
and the same state gives the same cached, byte-reproducible root file system.

Debian keeps no old state reachable here (snapshot.debian.org is not), so the state is observed
at build time, never pinned: a build always uses the archives as they are. Package versions are
compared as Debian compares them (python-debian's ``debian_support.Version``).
"""

from __future__ import annotations

import hashlib
import lzma
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import requests
from debian import deb822
from debian.debian_support import Version

from . import log
from .digests import sha256_json
from .errors import BaseImageError
from .matrix import AptArchive, RootfsBase

# Compressions apt understands that Debian's mirrors serve, the smallest first.
_COMPRESSIONS: Final = ((".xz", lzma.decompress), (".gz", lambda b: zlib.decompress(b, 47)))
TIMEOUT: Final = 60


def archives(base: RootfsBase) -> list[AptArchive]:
    """The archives a base is made from, in the order its sources list names them."""
    main = [
        AptArchive(uri=base.mirror, suite=base.suite, components=base.components),
        AptArchive(uri=base.mirror, suite=f"{base.suite}-updates", components=base.components),
        AptArchive(
            uri=base.security_mirror, suite=f"{base.suite}-security", components=base.components
        ),
    ]
    return [*main, *base.extra_archives]


def sources_line(archive: AptArchive) -> str:
    """The one-line sources.list entry of an archive (what the image's apt reads too)."""
    options = " [trusted=yes]" if archive.trusted else ""
    return f"deb{options} {archive.uri} {archive.suite} {' '.join(archive.components)}".rstrip()


def _flat(archive: AptArchive) -> bool:
    """A flat repository (``deb URI path/``) has no dists/ tree and no components."""
    return archive.suite.endswith("/")


def _base_url(archive: AptArchive) -> str:
    uri = archive.uri.rstrip("/")
    if _flat(archive):
        path = archive.suite.strip("/").removeprefix(".").strip("/")
        return f"{uri}/{path}" if path else uri
    return f"{uri}/dists/{archive.suite}"


def _get(url: str, what: str) -> bytes | None:
    """The body of ``url``; None on 404; BaseImageError when the archive cannot be read."""
    try:
        resp = requests.get(url, timeout=TIMEOUT)
    except requests.RequestException as exc:
        msg = f"{what}: cannot read {url} ({type(exc).__name__}); is the archive reachable?"
        raise BaseImageError(msg) from None
    if resp.status_code == 404:
        return None
    if resp.status_code != 200:
        raise BaseImageError(f"{what}: GET {url} answered HTTP {resp.status_code}")
    return resp.content


@dataclass(frozen=True, kw_only=True)
class ArchiveState:
    """One archive as it is now, for one architecture."""

    archive: AptArchive
    release_sha256: str  # of the InRelease (or Release) file read
    indices: tuple[tuple[str, str], ...]  # (Packages index path, its sha256), sorted
    # The InRelease (or Release) file itself: kept beside a base made from this state, it names
    # every index of the state by hash, so the state's versions can be read back later.
    release: bytes = field(default=b"", repr=False, compare=False)

    @property
    def line(self) -> str:
        return sources_line(self.archive)

    @property
    def digest(self) -> str:
        """What identifies the archive's packages for this architecture (not its signature)."""
        return sha256_json([self.line, list(self.indices)])


def _index_names(archive: AptArchive, debian_arch: str, release: deb822.Release) -> set[str]:
    """The Packages indices apt reads from an archive for an architecture: binary-<arch>, and
    binary-all only where the Release file says the arch's index leaves arch:all out."""
    if _flat(archive):
        return {"Packages"}
    arches = [debian_arch]
    offered = str(release.get("Architectures", "")).split()
    if "all" in offered and release.get("No-Support-for-Architecture-all") != "Packages":
        arches.append("all")
    names = set()
    for component in archive.components:
        for arch in arches:
            names.add(f"{component}/binary-{arch}/Packages")
            # The security archive calls its components updates/main but lists main/…
            names.add(f"{component.rsplit('/', 1)[-1]}/binary-{arch}/Packages")
    return names


def read_state(archive: AptArchive, debian_arch: str) -> ArchiveState:
    """Read an archive's InRelease (Release when unsigned) and the hashes of its indices."""
    what = f"archive {sources_line(archive)!r}"
    base = _base_url(archive)
    body = _get(f"{base}/InRelease", what)
    if body is None:
        body = _get(f"{base}/Release", what)
    if body is None:
        raise BaseImageError(f"{what}: neither {base}/InRelease nor Release exists")
    release = deb822.Release(body)
    wanted = _index_names(archive, debian_arch, release)
    found: dict[str, str] = {}
    for entry in release.get("SHA256", []):
        name = str(entry["name"])
        plain = name.removesuffix(".xz").removesuffix(".gz")
        if plain in wanted and (plain == name or plain not in found):
            found[plain] = str(entry["sha256"])
    if not found:
        msg = f"{what}: its Release file lists no Packages index for {debian_arch}"
        raise BaseImageError(msg)
    return ArchiveState(
        archive=archive,
        release_sha256=hashlib.sha256(body).hexdigest(),
        indices=tuple(sorted(found.items())),
        release=body,
    )


def read_states(base: RootfsBase, debian_arch: str) -> list[ArchiveState]:
    return [read_state(a, debian_arch) for a in archives(base)]


def states_digest(states: Sequence[ArchiveState]) -> str:
    """The digest of a base's archive states: part of the base's identity."""
    return sha256_json([s.digest for s in states])


# --- the versions an archive offers --------------------------------------------------------


def _release(archive: AptArchive) -> deb822.Release:
    base = _base_url(archive)
    what = f"archive {sources_line(archive)!r}"
    body = _get(f"{base}/InRelease", what) or _get(f"{base}/Release", what)
    if body is None:
        raise BaseImageError(f"{what}: neither {base}/InRelease nor Release exists")
    return deb822.Release(body)


def _fetch_index(
    archive: AptArchive, path: str, listed: dict[str, str], cache: Path, *, by_hash: bool
) -> bytes:
    """An index's uncompressed bytes, downloaded compressed and checked against the Release
    file's sha256; kept in ``cache`` under that sha256. Where the archive serves indices by
    hash (Debian's do), that is how they are fetched: a mirror updated between reading the
    Release file and the index still serves the index that Release file names."""
    what = f"archive {sources_line(archive)!r}"
    for suffix, decompress in (*_COMPRESSIONS, ("", lambda b: b)):
        expected = listed.get(path + suffix)
        if expected is None:
            continue
        cached = cache / expected
        if cached.is_file():
            return bytes(decompress(cached.read_bytes()))
        url = f"{_base_url(archive)}/{path}{suffix}"
        if by_hash:
            url = f"{_base_url(archive)}/{path.rpartition('/')[0]}/by-hash/SHA256/{expected}"
        log.command(["GET", url])
        body = _get(url, what)
        if body is None:
            continue
        actual = hashlib.sha256(body).hexdigest()
        if actual != expected:
            msg = f"{what}: {url} has sha256 {actual}, its Release file says {expected}"
            raise BaseImageError(msg)
        cache.mkdir(parents=True, exist_ok=True)
        part = cache / f".{expected}.part"
        part.write_bytes(body)
        part.replace(cached)
        return bytes(decompress(body))
    raise BaseImageError(f"{what}: no {path} index (plain, .xz or .gz) could be read")


@dataclass(frozen=True, kw_only=True)
class Available:
    """The newest version of a package across a set of archives, and where it is."""

    version: str
    suite: str


def newest_versions(
    archive_list: Iterable[AptArchive],
    debian_arch: str,
    cache: Path,
    releases: Mapping[str, bytes] | None = None,
) -> dict[str, Available]:
    """Package name → its newest version in any of the archives, for one architecture: as the
    archives are now, or, for an archive whose sources line ``releases`` maps to the Release
    file it had then (recorded_releases), as it was then (its indices fetched by hash)."""
    newest: dict[str, Available] = {}
    for archive in archive_list:
        recorded = (releases or {}).get(sources_line(archive))
        release = _release(archive) if recorded is None else deb822.Release(recorded)
        listed = {str(e["name"]): str(e["sha256"]) for e in release.get("SHA256", [])}
        by_hash = str(release.get("Acquire-By-Hash", "")).lower() == "yes"
        wanted = _index_names(archive, debian_arch, release)
        paths = sorted({n.removesuffix(".xz").removesuffix(".gz") for n in listed} & wanted)
        for path in paths:
            text = _fetch_index(archive, path, listed, cache, by_hash=by_hash)
            for paragraph in deb822.Packages.iter_paragraphs(
                text.decode("utf-8", "replace"), use_apt_pkg=False
            ):
                name, version = paragraph.get("Package"), paragraph.get("Version")
                if not name or not version:
                    continue
                known = newest.get(name)
                if known is None or Version(version) > Version(known.version):
                    newest[name] = Available(version=version, suite=archive.suite)
    return newest


@dataclass(frozen=True, kw_only=True)
class Upgrade:
    package: str
    installed: str
    available: str
    suite: str

    def line(self, sep: str = "\t") -> str:
        """``package installed → available (suite)``, the fields ``sep``-separated."""
        return sep.join((self.package, f"{self.installed} → {self.available}", f"({self.suite})"))


def upgrades(installed: dict[str, str], newest: dict[str, Available]) -> list[Upgrade]:
    """Installed packages (name → version) for which an archive has a newer version."""
    found = []
    for name, version in sorted(installed.items()):
        candidate = newest.get(name)
        if candidate is not None and Version(candidate.version) > Version(version):
            found.append(
                Upgrade(
                    package=name,
                    installed=version,
                    available=candidate.version,
                    suite=candidate.suite,
                )
            )
    return found


def installed_from_status(status: str) -> dict[str, str]:
    """Package name → version of every installed package in a dpkg status file."""
    installed = {}
    for paragraph in deb822.Deb822.iter_paragraphs(status, use_apt_pkg=False):
        state = paragraph.get("Status", "").split()
        if state[-1:] == ["installed"] and paragraph.get("Package") and paragraph.get("Version"):
            installed[paragraph["Package"]] = paragraph["Version"]
    return installed
