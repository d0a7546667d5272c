"""SBOM: what a snapshot's layers hold, as CycloneDX 1.6 JSON, and what changed between two.

Made on the host from the cell's ``layers/*.tar.xz`` — the bytes that are published — without
the engine. The layers are read as the image sees them: a later layer's files replace earlier
ones, and its whiteouts hide what lies below (oci/tree.py reads them), so nothing
deleted or overwritten above is reported from below.

Components, each with name, version, purl and licence where the image states one:

- OS packages from ``var/lib/dpkg/status`` (``pkg:deb/debian/NAME@VERSION?arch=…&distro=…``);
  the licence is that of the ``Files: *`` paragraph of ``usr/share/doc/NAME/copyright`` when
  that file is machine-readable (DEP-5), else none;
- Python distributions from ``*.dist-info/METADATA`` (``pkg:pypi``): License-Expression, else
  a one-line License, else the licence classifiers;
- npm packages from ``node_modules/[@scope/]NAME/package.json`` (``pkg:npm``);
- Java artifacts from ``META-INF/maven/GROUP/ARTIFACT/pom.properties`` inside ``*.jar`` files
  (``pkg:maven``);
- Ruby gems from the specifications RubyGems keeps beside every installed gem,
  ``specifications/[default/]NAME-VERSION.gemspec`` under each gem folder (``pkg:gem``): Ruby
  source, read as text, never run;
- Go executables (the RIE, Go bootstraps) from the build information Go writes into each
  binary (``pkg:golang``), main module and dependencies.

The document is byte-reproducible: the serial number is derived from the layers' diff IDs (and
the lock file's pinned Go builds, which name the RIE's version), the timestamp is
SOURCE_DATE_EPOCH, and components are sorted.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import functools
import hashlib
import io
import json
import logging
import lzma
import re
import tarfile
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from debian.copyright import Copyright, NotMachineReadableError
from debian.deb822 import Deb822
from packageurl import PackageURL

from .errors import SnapshotError
from .lock import Lock
from .oci import tree
from .workdir import write_atomic

if TYPE_CHECKING:
    from cyclonedx.model.component import Component

MEDIA_TYPE: Final = "application/vnd.cyclonedx+json"
FILE_NAME: Final = "sbom.cdx.json"
# The namespace of the serial numbers (a UUID of our own; uuid5 of the layers' diff IDs).
_SERIAL_NS: Final = uuid.UUID("6f1c6b0e-8a43-5a53-9a3e-2f7c1e4b9d10")
_GO_MAGIC: Final = b"\xff Go buildinf:"
_ELF: Final = b"\x7fELF"
_MAX_FILE: Final = 256 << 20  # larger files are not read into memory for inspection

# python-debian logs a warning for each old-style Format URL it accepts: not our reader's news.
logging.getLogger("debian.copyright").setLevel(logging.ERROR)

# Paths end at \Z: "$" would also match before a final newline of a name.
_DIST_INFO = re.compile(r"(?:^|/)([^/]+)\.dist-info/METADATA\Z")
_NPM = re.compile(r"(?:^|/)node_modules/((?:@[^/]+/)?[^/@][^/]*)/package\.json\Z")
_POM = re.compile(r"META-INF/maven/([^/]+)/([^/]+)/pom\.properties\Z")
# An installed gem's specification: <gem folder>/specifications/NAME-VERSION.gemspec, and a
# default gem's (part of Ruby itself) in specifications/default/.
_GEMSPEC = re.compile(r"(?:^|/)specifications/(?:default/)?[^/]+\.gemspec\Z")
_MAX_GEMSPEC: Final = 256 << 10  # a specification is a few kB; a larger file is not one


@dataclass(frozen=True, order=True, kw_only=True)
class Package:
    """One component as found in the image (pure data; made into CycloneDX by ``document``)."""

    ecosystem: str  # deb | pypi | npm | maven | gem | golang
    name: str
    version: str
    namespace: str | None = None
    qualifiers: tuple[tuple[str, str], ...] = ()
    licenses: tuple[str, ...] = ()
    path: str = ""  # where it was found (first path, sorted)
    kind: str = "library"  # library | application
    version_from: str = ""  # where the version was read when not from the file itself

    @property
    def purl(self) -> str:
        return PackageURL(
            type=self.ecosystem,
            namespace=self.namespace,
            name=self.name,
            version=self.version,
            qualifiers=dict(self.qualifiers) or None,
        ).to_string()

    @property
    def key(self) -> str:
        """What identifies the package across versions (the changelog's unit)."""
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.ecosystem}:{ns}{self.name}"


# --- the image's files, layers applied ------------------------------------------------------


class ImageFiles:
    """The file system the layers make (oci/tree.py), with the bytes of the files ``wanted``."""

    def __init__(
        self, layers: Sequence[Path], wanted: Callable[[str, int, int, bytes | None], bool]
    ) -> None:
        """``wanted(path, mode, size, data)`` says whether to keep a regular file's content;
        with ``data`` None it is asked first whether to read the file at all."""

        def look(name: str, member: tarfile.TarInfo, content: IO[bytes]) -> bytes | None:
            if member.size > _MAX_FILE or not wanted(name, member.mode, member.size, None):
                return None
            data = content.read()
            return data if wanted(name, member.mode, member.size, data) else None

        self.tree: tree.FileTree[bytes] = tree.FileTree()
        for path in layers:
            try:
                with lzma.open(path) as raw:
                    self.tree.add(tree.read_layer(raw, look))
            except (lzma.LZMAError, tarfile.TarError, EOFError) as exc:
                msg = f"{path}: not a readable layer tarball ({exc}); run the snapshot stage again"
                raise SnapshotError(msg) from None
        self.content = {p: e.seen for p, e in self.tree.entries.items() if e.seen is not None}

    def read(self, path: str) -> bytes | None:
        """The content of ``path``, following symbolic links among its directories."""
        resolved = self.tree.resolve(path)
        return None if resolved is None else self.content.get(resolved)


def _wanted(path: str, mode: int, size: int, data: bytes | None) -> bool:
    if path == "var/lib/dpkg/status" or path in ("etc/os-release", "usr/lib/os-release"):
        return True
    if path.startswith("usr/share/doc/") and path.endswith("/copyright"):
        return True
    if _DIST_INFO.search(path) or _NPM.search(path) or path.endswith(".jar"):
        return True
    if _GEMSPEC.search(path):
        return size <= _MAX_GEMSPEC
    if data is None:  # an executable may be a Go program: read it to see
        return bool(mode & 0o111) and size > 0
    return data.startswith(_ELF) and _GO_MAGIC in data


# --- readers, one per ecosystem (pure: bytes in, packages out) --------------------------------


def os_release(files: ImageFiles) -> dict[str, str]:
    text = files.read("etc/os-release") or files.read("usr/lib/os-release") or b""
    values = {}
    for line in text.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def dep5_license(text: bytes) -> str | None:
    """The licence of ``Files: *`` in a machine-readable copyright file; None otherwise."""
    try:
        parsed = Copyright(io.StringIO(text.decode("utf-8", "replace")), strict=False)
    except NotMachineReadableError:
        return None
    except Exception:  # python-debian raises several kinds on broken files: no licence then
        return None
    for paragraph in parsed.all_files_paragraphs():
        licence = paragraph.license
        if "*" in paragraph.files and licence is not None:
            synopsis = str(getattr(licence, "synopsis", "")).strip()
            return synopsis or None
    return None


def dpkg_packages(files: ImageFiles, distro: str) -> list[Package]:
    status = files.read("var/lib/dpkg/status")
    if status is None:
        return []
    found = []
    for para in Deb822.iter_paragraphs(status.decode("utf-8", "replace")):
        name, version = para.get("Package"), para.get("Version")
        if not name or not version or not para.get("Status", "").endswith(" installed"):
            continue
        copyright_text = files.read(f"usr/share/doc/{name}/copyright")
        licence = dep5_license(copyright_text) if copyright_text else None
        qualifiers = [("arch", para.get("Architecture", ""))]
        if distro:
            qualifiers.append(("distro", distro))
        found.append(
            Package(
                ecosystem="deb",
                namespace="debian",
                name=name,
                version=version,
                qualifiers=tuple(q for q in qualifiers if q[1]),
                licenses=(licence,) if licence else (),
                path="var/lib/dpkg/status",
            )
        )
    return found


def pypi_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _unicode(value: str) -> str:
    """Text read from the image as it can stand in a UTF-8 document: a lone surrogate (which
    JSON's ``\\ud800`` escape yields) becomes U+FFFD. Anything else is kept as it is: the SBOM
    is data, and JSON escapes newlines and quotes; formats that show text escape it
    themselves (pipeline/text.py)."""
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def python_package(path: str, text: bytes) -> Package | None:
    # Parsed as text: the bytes parser keeps a non-ASCII value (a licence naming its author)
    # as an email.header.Header instead of a string.
    meta = email.parser.HeaderParser().parsestr(text.decode("utf-8", "replace"))
    name, version = meta.get("Name"), meta.get("Version")
    if not name or not version:
        return None
    licences: tuple[str, ...] = ()
    expression = (meta.get("License-Expression") or "").strip()
    plain = (meta.get("License") or "").strip()
    if expression:
        licences = (expression,)
    elif plain and "\n" not in plain and len(plain) <= 100 and plain.upper() != "UNKNOWN":
        licences = (plain,)
    else:
        classifiers = [
            c.split("::")[-1].strip()
            for c in meta.get_all("Classifier") or []
            if c.startswith("License ::") and c.count("::") >= 2
        ]
        licences = tuple(sorted(set(classifiers)))
    return Package(
        ecosystem="pypi", name=pypi_name(name), version=version, licenses=licences, path=path
    )


def npm_package(path: str, text: bytes) -> Package | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    name, version = data.get("name"), data.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return None
    licence = data.get("license")
    if isinstance(licence, dict):
        licence = licence.get("type")
    namespace, _, short = _unicode(name).rpartition("/")
    return Package(
        ecosystem="npm",
        namespace=namespace or None,
        name=short,
        version=_unicode(version),
        licenses=(_unicode(licence),) if isinstance(licence, str) and licence else (),
        path=path,
    )


def _properties(text: bytes) -> dict[str, str]:
    """A Java ``.properties`` file as Maven writes ``pom.properties``: ``key=value`` lines."""
    values = {}
    for line in text.decode("latin-1").splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, _, value = line.partition("=") if "=" in line else line.partition(":")
        values[key.strip()] = value.strip()
    return values


def jar_packages(path: str, data: bytes) -> list[Package]:
    found = []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as jar:
            for member in jar.namelist():
                if not _POM.fullmatch(member):
                    continue
                props = _properties(jar.read(member))
                group, artifact, version = (
                    props.get("groupId"),
                    props.get("artifactId"),
                    props.get("version"),
                )
                if group and artifact and version:
                    found.append(
                        Package(
                            ecosystem="maven",
                            namespace=group,
                            name=artifact,
                            version=version,
                            path=path,
                        )
                    )
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError):
        return []
    return found


# What a gem specification says, as RubyGems writes it when it installs a gem (and Debian's
# gem2deb and Ruby's own installer likewise): `s.name = "NAME".freeze` and `s.version =
# "VERSION"` in the `Gem::Specification.new do |s|` block, and a `# stub: NAME VERSION PLATFORM
# PATHS` line at the top. The values are matched as one quoted literal each (no interpolation,
# no code), within a bounded text; a file that says neither is no gem.
_GEM_STRING = r"""(?:"([^"\\#\n]{1,200})"|'([^'\\\n]{1,200})'|%q\{([^}\n]{1,200})\})"""
_GEM_FIELD = {
    field: re.compile(rf"^[ \t]*[a-z_]\w*\.{field}[ \t]*=[ \t]*{_GEM_STRING}", re.MULTILINE)
    for field in ("name", "version", "platform")
}
_GEM_LICENSES = re.compile(
    r"^[ \t]*[a-z_]\w*\.licenses?[ \t]*=[ \t]*\[?([^\n]{1,500})", re.MULTILINE
)
_GEM_STUB = re.compile(r"\A(?:#[^\n]*\n){0,5}?# stub: (\S{1,200}) (\S{1,200}) (\S{1,100})")
_GEM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_GEM_VERSION = re.compile(r"[0-9][0-9A-Za-z.-]{0,99}")
_GEM_PLATFORM = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def _gem_value(field: str, text: str) -> str | None:
    match = _GEM_FIELD[field].search(text)
    if match is None:
        return None
    return next(group for group in match.groups() if group is not None)


def gem_package(path: str, data: bytes) -> Package | None:
    """The gem a ``specifications/*.gemspec`` file describes, read as text (never run)."""
    text = data[:_MAX_GEMSPEC].decode("utf-8", "replace")
    name, version = _gem_value("name", text), _gem_value("version", text)
    platform = _gem_value("platform", text)
    stub = _GEM_STUB.search(text)
    if stub is not None:
        name, version = name or stub.group(1), version or stub.group(2)
        platform = platform or stub.group(3)
    if name is None or version is None:
        return None
    if not _GEM_NAME.fullmatch(name) or not _GEM_VERSION.fullmatch(version):
        return None
    licences: tuple[str, ...] = ()
    listed = _GEM_LICENSES.search(text)
    if listed is not None:
        licences = tuple(
            next(group for group in found.groups() if group is not None)
            for found in re.finditer(_GEM_STRING, listed.group(1))
        )
    qualifiers: tuple[tuple[str, str], ...] = ()
    if platform and platform != "ruby" and _GEM_PLATFORM.fullmatch(platform):
        qualifiers = (("platform", platform),)
    return Package(
        ecosystem="gem",
        name=name,
        version=version,
        qualifiers=qualifiers,
        licenses=licences,
        path=path,
    )


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("truncated varint")


def go_build_info(data: bytes) -> tuple[str, str] | None:
    """(Go version, module info text) of a Go ≥ 1.18 executable, or None."""
    if not data.startswith(_ELF):
        return None
    at = data.find(_GO_MAGIC)
    while at != -1:
        # 16-byte magic+pointer size+flags header, padded to 32; flag 2: strings inline.
        if at % 16 == 0 and len(data) >= at + 32 and data[at + 15] & 0x2:
            try:
                size, pos = _uvarint(data, at + 32)
                version = data[pos : pos + size].decode("utf-8", "replace")
                size, pos = _uvarint(data, pos + size)
                modinfo = data[pos : pos + size].decode("utf-8", "replace")
            except ValueError:
                return None
            # The module text sits between two 16-byte sentinels.
            if len(modinfo) >= 33 and modinfo[-17] == "\n":
                modinfo = modinfo[16:-16]
            return version, modinfo
        at = data.find(_GO_MAGIC, at + 1)
    return None


GoPins = Mapping[str, tuple[str, str]]  # sha256 of a binary → (module, version) it was built from


def go_pins(lock: Lock) -> dict[str, tuple[str, str]]:
    """The Go programs the pipeline builds (the RIE): each pinned binary's sha256 → the module
    and version runtimes.lock.json says it was built from."""
    pins = {}
    for name, module in lock.go.items():
        for digest in lock.inputs.get(name, {}).values():
            if digest:
                pins[digest] = (module.module, module.version)
    return pins


def go_packages(path: str, data: bytes, pins: GoPins | None = None) -> list[Package]:
    """The modules of a Go program. A program built inside its own module's tree (as the
    pipeline builds the RIE, with -buildvcs=false) records its main module as ``(devel)``;
    when its bytes are a build the lock file pins, the pinned version is used, and said."""
    info = go_build_info(data)
    if info is None:
        return []
    go_version, modinfo = info
    pinned = (pins or {}).get(hashlib.sha256(data).hexdigest())
    found = []
    for line in modinfo.splitlines():
        fields = line.split("\t")
        if fields[0] in ("mod", "dep") and len(fields) >= 3:
            module, version = fields[1], fields[2]
            version_from = ""
            if fields[0] == "mod" and version == "(devel)" and pinned and pinned[0] == module:
                version = pinned[1]
                version_from = "runtimes.lock.json: the pinned build of this module version"
            namespace, _, name = module.rpartition("/")
            found.append(
                Package(
                    ecosystem="golang",
                    namespace=namespace or None,
                    name=name,
                    version=version,
                    path=path,
                    kind="application" if fields[0] == "mod" else "library",
                    version_from=version_from,
                )
            )
    if go_version.startswith("go"):
        found.append(Package(ecosystem="golang", name="stdlib", version=go_version, path=path))
    return found


# --- the whole image --------------------------------------------------------------------------


def distro_of(release: dict[str, str]) -> str:
    os_id, version = release.get("ID", ""), release.get("VERSION_ID", "")
    return f"{os_id}-{version}" if os_id and version else os_id


def image_packages(
    layers: Sequence[Path], pins: GoPins | None = None
) -> tuple[dict[str, str], list[Package]]:
    """os-release values and every package the layers (in image order) hold, sorted."""
    files = ImageFiles(layers, _wanted)
    release = os_release(files)
    found = dpkg_packages(files, distro_of(release))
    for path in sorted(files.content):
        data = files.content[path]
        package: Package | None = None
        if _DIST_INFO.search(path):
            package = python_package(path, data)
        elif _NPM.search(path):
            package = npm_package(path, data)
        elif path.endswith(".jar"):
            found += jar_packages(path, data)
        elif _GEMSPEC.search(path):
            package = gem_package(path, data)
        elif data.startswith(_ELF):
            found += go_packages(path, data, pins)
        if package is not None:
            found.append(package)
    # One component per purl: the first path (in sorted order) names where it is.
    unique: dict[str, Package] = {}
    for package in sorted(found, key=lambda p: (p.purl, p.path)):
        unique.setdefault(package.purl, package)
    return release, sorted(unique.values(), key=lambda p: p.purl)


def serial_number(
    runtime: str, arch: str, diff_ids: Iterable[str], pins: GoPins | None = None
) -> uuid.UUID:
    """A UUID derived from what the document is made from: the layers, and the pinned Go
    builds that may name versions in it."""
    pinned = [
        f"{sha} {module} {version}" for sha, (module, version) in sorted((pins or {}).items())
    ]
    return uuid.uuid5(_SERIAL_NS, "\n".join([runtime, arch, *diff_ids, *pinned]))


@functools.cache
def _licenses() -> Any:
    from cyclonedx.contrib.license.factories import LicenseFactory

    return LicenseFactory()


def _component(package: Package) -> Component:
    # cyclonedx is imported where a document is made: a command that makes none (a no-op
    # rebuild) does not pay for loading it.
    from cyclonedx.model import Property
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.license import DisjunctiveLicense

    licences: list[Any] = []
    for text in package.licenses:
        try:
            licences.append(_licenses().make_from_string(text))
        except Exception:  # anything the factory cannot classify is kept as a named licence
            licences.append(DisjunctiveLicense(name=text))
    return Component(
        type=ComponentType.APPLICATION if package.kind == "application" else ComponentType.LIBRARY,
        name=package.name,
        group=None if package.ecosystem == "deb" else package.namespace,
        version=package.version,
        purl=PackageURL.from_string(package.purl),
        bom_ref=package.purl,
        licenses=licences,
        properties=[
            Property(name="lambda-images:path", value=package.path),
            *(
                [Property(name="lambda-images:version-from", value=package.version_from)]
                if package.version_from
                else []
            ),
        ],
    )


def document(
    *,
    runtime: str,
    arch: str,
    diff_ids: Sequence[str],
    epoch: int,
    release: dict[str, str],
    packages: Sequence[Package],
    pins: GoPins | None = None,
) -> bytes:
    """The CycloneDX 1.6 JSON document (bytes, ending in a newline)."""
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    image = Component(
        type=ComponentType.CONTAINER,
        name=runtime,
        bom_ref=f"image:{runtime}/{arch}",
        properties=[
            Property(name="lambda-images:arch", value=arch),
            *(Property(name="lambda-images:diff-id", value=d) for d in diff_ids),
        ],
    )
    bom = Bom(
        serial_number=serial_number(runtime, arch, diff_ids, pins),
        metadata=BomMetaData(timestamp=dt.datetime.fromtimestamp(epoch, dt.UTC), component=image),
    )
    if release.get("ID"):
        bom.components.add(
            Component(
                type=ComponentType.OPERATING_SYSTEM,
                name=release["ID"],
                version=release.get("VERSION_ID"),
                bom_ref=f"os:{distro_of(release)}",
                description=release.get("PRETTY_NAME"),
            )
        )
    for package in packages:
        bom.components.add(_component(package))
    with warnings.catch_warnings():
        # The library warns that the image component lists no dependencies: it has none here.
        warnings.simplefilter("ignore", UserWarning)
        text = JsonV1Dot6(bom).output_as_string()
    # Re-serialized with sorted keys and components in bom-ref order (the purl): the library's
    # own orders are not part of its contract.
    parsed = json.loads(text)
    parsed["components"] = sorted(parsed.get("components") or [], key=lambda c: c["bom-ref"])
    parsed.pop("dependencies", None)  # one entry per component, none with any edge: noise
    return (json.dumps(parsed, indent=1, sort_keys=True) + "\n").encode()


def make_sbom(
    runtime: str,
    arch: str,
    layers: Sequence[Path],
    diff_ids: Sequence[str],
    epoch: int,
    pins: GoPins | None = None,
) -> bytes:
    release, packages = image_packages(layers, pins)
    return document(
        runtime=runtime,
        arch=arch,
        diff_ids=diff_ids,
        epoch=epoch,
        release=release,
        packages=packages,
        pins=pins,
    )


def cell_sbom(
    path: Path,
    *,
    runtime: str,
    arch: str,
    layers: Sequence[Path],
    diff_ids: Sequence[str],
    epoch: int,
    pins: GoPins | None = None,
) -> bytes:
    """The SBOM of a cell's snapshot, kept at ``path``: made again only when the one there is
    not of these layers and this epoch (its serial number and timestamp say which)."""
    serial = f"urn:uuid:{serial_number(runtime, arch, diff_ids, pins)}"
    stamp = dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()
    try:
        kept = path.read_bytes()
        parsed = json.loads(kept)
        if parsed.get("serialNumber") == serial and parsed["metadata"]["timestamp"] == stamp:
            return kept
    except (OSError, ValueError, KeyError, TypeError):
        pass
    made = make_sbom(runtime, arch, layers, diff_ids, epoch, pins)
    write_atomic(path, made)
    return made


# --- reading one back, and the changelog ------------------------------------------------------


def versions(sbom: dict[str, Any]) -> dict[str, list[str]]:
    """Package key (ecosystem:namespace/name) → sorted versions, from a CycloneDX document."""
    found: dict[str, set[str]] = {}
    for component in sbom.get("components") or []:
        purl = component.get("purl")
        if not isinstance(purl, str):
            continue
        try:
            parsed = PackageURL.from_string(purl)
        except ValueError:
            continue
        ns = f"{parsed.namespace}/" if parsed.namespace else ""
        found.setdefault(f"{parsed.type}:{ns}{parsed.name}", set()).add(parsed.version or "")
    return {key: sorted(v) for key, v in sorted(found.items())}


@dataclass(kw_only=True)
class Changes:
    """What moved between two SBOMs of one image: package key → versions."""

    previous: str | None  # the release compared with; None: first release
    added: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    upgraded: dict[str, tuple[str, str]] = field(default_factory=dict)  # key → (old, new)
    note: str | None = None  # why there is nothing to compare with, when so

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.upgraded)

    def as_json(self) -> dict[str, Any]:
        return {
            "previous": self.previous,
            "note": self.note,
            "added": self.added,
            "removed": self.removed,
            "upgraded": {k: {"from": old, "to": new} for k, (old, new) in self.upgraded.items()},
        }

    def lines(self) -> list[str]:
        """Human lines: ``+ key version``, ``- key version``, ``~ key old → new``."""
        if self.note:
            return [self.note]
        if self.empty:
            return [f"no package changed since {self.previous}"]
        out = [f"~ {k} {old} → {new}" for k, (old, new) in self.upgraded.items()]
        out += [f"+ {k} {v}" for k, v in self.added.items()]
        out += [f"- {k} {v}" for k, v in self.removed.items()]
        return out


def diff(old: dict[str, Any] | None, new: dict[str, Any], previous: str | None) -> Changes:
    """The changes from ``old`` to ``new`` (None: first release)."""
    if old is None:
        return Changes(previous=None, note="first release")
    before, after = versions(old), versions(new)
    changes = Changes(previous=previous)
    for key in sorted(set(before) | set(after)):
        was, now = before.get(key), after.get(key)
        if was == now:
            continue
        if was is None:
            changes.added[key] = ", ".join(now or [])
        elif now is None:
            changes.removed[key] = ", ".join(was)
        else:
            changes.upgraded[key] = (", ".join(was), ", ".join(now))
    return changes
