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

An archive's ``InRelease`` is believed only once ``gpgv`` has checked its signature against the
archive's keyring (Debian's by default), as apt does: only the signed text is read, it must name
the suite it was asked for, and its ``Valid-Until`` must not have passed, so that whoever sits
on the (plain http) path can neither forge an archive's state nor replay an old one to hide a
security update. An archive declared ``trusted: true`` (``[trusted=yes]``) is read unsigned.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import hashlib
import lzma
import re
import shutil
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import requests
from debian import deb822
from debian.debian_support import Version

from . import log
from .digests import sha256_json
from .errors import BaseImageError
from .matrix import DEBIAN_KEYRING, AptArchive, RootfsBase

# Compressions apt understands that Debian's mirrors serve, the smallest first.
_COMPRESSIONS: Final = ((".xz", lzma.decompress), (".gz", lambda b: zlib.decompress(b, 47)))
TIMEOUT: Final = 60
MAX_RELEASE: Final = 16 * 1024 * 1024  # an InRelease is about 150 KB
MAX_INDEX: Final = 512 * 1024 * 1024  # a compressed Packages index: main's is about 10 MB
# What a package name and version may hold (Debian policy 5.6.1, 5.6.12): nothing else from an
# index or a dpkg status is believed, or reaches a report.
_PACKAGE: Final = re.compile(r"[a-z0-9][a-z0-9+.-]{0,127}")
_VERSION: Final = re.compile(r"[0-9][A-Za-z0-9.+~:-]{0,127}")


def archives(base: RootfsBase) -> list[AptArchive]:
    """The archives a base is made from, in the order its sources list names them, each with
    the keyring that signs it (the base's, unless an extra archive names its own)."""
    main = [
        AptArchive(uri=base.mirror, suite=base.suite, components=base.components),
        AptArchive(uri=base.mirror, suite=f"{base.suite}-updates", components=base.components),
        AptArchive(
            uri=base.security_mirror, suite=f"{base.suite}-security", components=base.components
        ),
    ]
    return [
        dataclasses.replace(a, keyring=a.keyring or base.keyring)
        for a in [*main, *base.extra_archives]
    ]


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


def _get(url: str, what: str, limit: int = MAX_RELEASE) -> bytes | None:
    """The body of ``url`` (at most ``limit`` bytes); None on 404; BaseImageError when the
    archive cannot be read."""
    try:
        with requests.get(url, timeout=TIMEOUT, stream=True) as resp:
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                raise BaseImageError(f"{what}: GET {url} answered HTTP {resp.status_code}")
            body = bytearray()
            for chunk in resp.iter_content(1 << 20):
                body += chunk
                if len(body) > limit:
                    raise BaseImageError(f"{what}: {url} is larger than {limit} bytes; refused")
            return bytes(body)
    except requests.RequestException as exc:
        msg = f"{what}: cannot read {url} ({type(exc).__name__}); is the archive reachable?"
        raise BaseImageError(msg) from None


def _gpgv(signed: Path, data: Path | None, keyring: str, what: str) -> bytes:
    """Check ``signed`` (an InRelease, or with ``data`` a detached Release.gpg) with gpgv
    against ``keyring``, as apt does: at least one good signature by a key of the keyring and
    no bad one. Returns the signed text (what gpgv vouches for, never the bytes around it)."""
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        msg = f"{what}: gpgv is not installed (apt-get install gpgv); it checks the signature"
        raise BaseImageError(msg)
    if not Path(keyring).is_file():
        msg = (
            f"{what}: its keyring {keyring} does not exist (Debian's: apt-get install "
            "debian-archive-keyring); declare the archive's keyring, or trusted: true"
        )
        raise BaseImageError(msg)
    with tempfile.TemporaryDirectory(prefix="lambda-images-gpgv-") as home:
        output = Path(home, "signed")
        argv = [gpgv, "--homedir", home, "--status-fd", "1", "--keyring", keyring]
        argv += [str(signed)] if data is None else [str(signed), str(data)]
        if data is None:
            argv[1:1] = ["--output", str(output)]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise BaseImageError(f"{what}: gpgv did not finish in {TIMEOUT} s") from None
        status = [line.split()[1:2] for line in proc.stdout.decode(errors="replace").splitlines()]
        flat = [words[0] for words in status if words]
        if "VALIDSIG" not in flat or "BADSIG" in flat:
            msg = (
                f"{what}: its signature does not check out against {keyring} (gpgv: "
                f"{', '.join(sorted(set(flat))) or 'no signature'}); refused, as apt refuses it"
            )
            raise BaseImageError(msg)
        return output.read_bytes() if data is None else data.read_bytes()


def _signed_text(archive: AptArchive, inrelease: bytes, what: str) -> bytes:
    """What an InRelease file says, once gpgv found it signed by the archive's keyring."""
    with tempfile.TemporaryDirectory(prefix="lambda-images-release-") as tmp:
        Path(tmp, "InRelease").write_bytes(inrelease)
        return _gpgv(Path(tmp, "InRelease"), None, archive.keyring or DEBIAN_KEYRING, what)


def _recorded_release(archive: AptArchive, body: bytes) -> deb822.Release:
    """A Release file kept from an earlier read (base.recorded_releases), checked again as
    then; its Valid-Until has passed by design, for it tells how the archive was."""
    if archive.trusted or not body.startswith(b"-----BEGIN PGP SIGNED MESSAGE-----"):
        if not archive.trusted:
            msg = f"archive {sources_line(archive)!r}: its recorded Release file is not signed"
            raise BaseImageError(msg)
        return deb822.Release(body)
    return deb822.Release(_signed_text(archive, body, f"archive {sources_line(archive)!r}"))


# Release files already checked in this process, by archive, keyring and the sha256 of the
# bytes fetched: the same InRelease read again (the next architecture of the same base) is not
# verified and parsed again. Every read still fetches the file: its bytes decide the state.
_CHECKED: dict[tuple[str, str, bool, str], deb822.Release] = {}
_CHECKED_GUARD = threading.Lock()


def _release_file(archive: AptArchive) -> tuple[bytes, deb822.Release]:
    """An archive's ``InRelease`` (as fetched: its sha256 is part of the lock) and its
    content, checked as the module says. A trusted archive may have a plain ``Release``."""
    what = f"archive {sources_line(archive)!r}"
    body = _get(f"{_base_url(archive)}/InRelease", what)
    if body is None:
        return _checked_release(archive, body, what)
    key = (
        sources_line(archive),
        archive.keyring or DEBIAN_KEYRING,
        archive.trusted,
        hashlib.sha256(body).hexdigest(),
    )
    with _CHECKED_GUARD:
        known = _CHECKED.get(key)
    if known is not None:
        return body, known
    body, release = _checked_release(archive, body, what)
    with _CHECKED_GUARD:
        _CHECKED[key] = release
    return body, release


def _checked_release(
    archive: AptArchive, body: bytes | None, what: str
) -> tuple[bytes, deb822.Release]:
    """The Release file an archive vouches for, from its fetched InRelease ``body`` (None:
    there is none, and the older layout is tried)."""
    base = _base_url(archive)
    if archive.trusted:
        body = body if body is not None else _get(f"{base}/Release", what)
        if body is None:
            raise BaseImageError(f"{what}: neither {base}/InRelease nor Release exists")
        return body, deb822.Release(body)
    keyring = archive.keyring or DEBIAN_KEYRING
    with tempfile.TemporaryDirectory(prefix="lambda-images-release-") as tmp:
        if body is not None:
            text = _signed_text(archive, body, what)
        else:  # the older layout: Release and its detached signature
            plain, signature = _get(f"{base}/Release", what), _get(f"{base}/Release.gpg", what)
            if plain is None or signature is None:
                msg = (
                    f"{what}: no signed {base}/InRelease (nor Release with Release.gpg); an "
                    "unsigned archive must be declared trusted: true"
                )
                raise BaseImageError(msg)
            Path(tmp, "Release").write_bytes(plain)
            Path(tmp, "Release.gpg").write_bytes(signature)
            text = _gpgv(Path(tmp, "Release.gpg"), Path(tmp, "Release"), keyring, what)
            body = plain
    release = deb822.Release(text)
    _check_release(archive, release, what)
    return body, release


def _check_release(archive: AptArchive, release: deb822.Release, what: str) -> None:
    """A signed Release of the suite asked for, still valid: a Release of another suite (the
    stable one instead of -security), or one past its Valid-Until, is a replay."""
    names = {str(release.get("Suite", "")), str(release.get("Codename", ""))}
    if not _flat(archive) and archive.suite not in names:
        said = " / ".join(sorted(n for n in names if n)) or "no suite"
        msg = f"{what}: its InRelease is signed for {said!r}, not {archive.suite!r}; refused"
        raise BaseImageError(msg)
    until = str(release.get("Valid-Until", "")).strip()
    if until:
        try:
            expires = email.utils.parsedate_to_datetime(until)
        except (TypeError, ValueError, IndexError):
            raise BaseImageError(f"{what}: its Valid-Until {until[:40]!r} is no date") from None
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=dt.UTC)
        if expires < dt.datetime.now(dt.UTC):
            msg = (
                f"{what}: its InRelease expired on {until} (Valid-Until): a stale mirror, or an "
                "old file served again; refused, as apt refuses it"
            )
            raise BaseImageError(msg)


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
    """Read an archive's InRelease (checked; Release when trusted and unsigned) and the hashes
    of its indices."""
    what = f"archive {sources_line(archive)!r}"
    body, release = _release_file(archive)
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
    """Every archive of the base as it is now, read at once (one round trip, not three)."""
    wanted = archives(base)
    with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
        return list(pool.map(lambda archive: read_state(archive, debian_arch), wanted))


def states_digest(states: Sequence[ArchiveState]) -> str:
    """The digest of a base's archive states: part of the base's identity."""
    return sha256_json([s.digest for s in states])


# --- the versions an archive offers --------------------------------------------------------


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
            kept = cached.read_bytes()
            if hashlib.sha256(kept).hexdigest() == expected:
                return bytes(decompress(kept))
            cached.unlink()  # damaged in the cache: fetched again
        url = f"{_base_url(archive)}/{path}{suffix}"
        if by_hash:
            url = f"{_base_url(archive)}/{path.rpartition('/')[0]}/by-hash/SHA256/{expected}"
        log.command(["GET", url])
        body = _get(url, what, MAX_INDEX)
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
        if recorded is None:
            release = _release_file(archive)[1]
        else:
            release = _recorded_release(archive, recorded)
        listed = {str(e["name"]): str(e["sha256"]) for e in release.get("SHA256", [])}
        by_hash = str(release.get("Acquire-By-Hash", "")).lower() == "yes"
        wanted = _index_names(archive, debian_arch, release)
        paths = sorted({n.removesuffix(".xz").removesuffix(".gz") for n in listed} & wanted)
        for path in paths:
            text = _fetch_index(archive, path, listed, cache, by_hash=by_hash)
            for paragraph in deb822.Packages.iter_paragraphs(
                text.decode("utf-8", "replace"), use_apt_pkg=False
            ):
                name, version = paragraph.get("Package", ""), paragraph.get("Version", "")
                if not _package(name, version):
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
        name, version = paragraph.get("Package", ""), paragraph.get("Version", "")
        if state[-1:] == ["installed"] and _package(name, version):
            installed[name] = version
    return installed


def _package(name: str, version: str) -> bool:
    """True for a Debian package name and version (a dpkg status read from a published image
    is the registry's text: anything else in it is left out, and never reaches a report)."""
    if not (_PACKAGE.fullmatch(name) and _VERSION.fullmatch(version)):
        return False
    try:
        Version(version)
    except ValueError:
        return False
    return True
