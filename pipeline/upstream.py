"""Upstream: the newest release each pinned input's registry serves, and the digest it
publishes for an artifact, read from the registry's own metadata.

- ``pypi``: ``<pypi>/<project>/json``, its releases and each file's sha256; PEP 440's
  order (``packaging``);
- ``npm``: ``<npm>/<package>`` (abbreviated metadata), its versions and each tarball's
  ``dist.integrity``; semver's order (``semver``);
- ``maven``: ``<maven>/<group path>/<artifact>/maven-metadata.xml``, and the ``.sha1``
  published beside each artifact; Maven's order (``univers``' port of ComparableVersion);
- ``go``: ``<goproxy>/<module>/@v/list`` (``@latest`` for a pseudo-version) and the checksum
  database's record, read through the proxy; Go's semver;
- ``nodejs``: ``<nodejs>/index.json`` (the pin's own major line) and each release's
  ``SHASUMS256.txt``; semver.

"Newest" is the newest stable release: no pre-release (nor a PyPI release whose files are
all yanked, nor a deprecated npm version), below the pin's declared bound when it has one. A
pseudo-version pin (a Go module with no release, such as AWS's emulator) moves to the proxy's
``@latest`` pseudo-version.

Registries are not trusted to be well-behaved: every answer goes through the OCI client's
transport (oci/transport.py: retries, bounded bodies, checked redirects) and is checked for
the shape expected; a version string from a registry is data, checked against a strict
pattern before anything uses it, and never reaches a command line or a Dockerfile.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import quote, urlsplit

import requests
import semver

from . import log
from .errors import RegistryError
from .oci.transport import RetryPolicy, Transport, Unreachable, quoted
from .pins import Pin, Pins, Unwatched
from .settings import Upstreams
from .versions import REGISTRY_NAMES, Kind, is_pseudo_version, newer, newest_of, parses

MAX_METADATA: Final = 32 << 20  # a project's whole release history (boto3's: 3.3 MB in 2026)
MAX_SMALL: Final = 1 << 20  # a version list, a checksum file, a lookup
# A version as a registry may write it: letters, digits and . + _ ~ - (no space, no slash).
VERSION_TEXT: Final = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_~-]{0,99}")
SHA256: Final = re.compile(r"[0-9a-f]{64}")
SHA1: Final = re.compile(r"[0-9a-f]{40}")
GO_SUM: Final = re.compile(r"h1:[A-Za-z0-9+/]{43}=")
INTEGRITY: Final = re.compile(r"sha512-[A-Za-z0-9+/]{86}==")
# npm's abbreviated metadata: versions, their dist and deprecation, without READMEs.
NPM_ABBREVIATED: Final = {"Accept": "application/vnd.npm.install-v1+json"}
# What the outdated check tries before it calls a registry unreachable: a few quick tries.
QUICK: Final = RetryPolicy(attempts=3, initial=0.5, cap=4.0, timeout=60.0)


# --- the registries ----------------------------------------------------------------------


class Index(Transport):
    """HTTP to one registry host, through the OCI client's transport: retries, bounded
    answers, redirects checked; an answer other than 200 or 404 is refused in one line."""

    def fetch(
        self, url: str, *, what: str, limit: int, headers: Mapping[str, str] | None = None
    ) -> bytes | None:
        """The body at ``url`` (None: 404 or 410); Unreachable when every retry failed."""
        answer = self._request(
            "GET", url, repo=None, what=what, ok=(200, 404, 410), limit=limit, headers=headers
        )
        return answer.body if answer.status == 200 else None

    def _refused(self, response: requests.Response, what: str, repo: str | None) -> RegistryError:
        status = response.status_code
        response.close()
        return RegistryError(f"registry {self.host}: {what}: HTTP {status}; refused")


def _shape(host: str, what: str, detail: str) -> RegistryError:
    return RegistryError(f"registry {host}: {what}: not the answer expected ({detail}); refused")


def _version(host: str, what: str, value: Any) -> str:
    """A version string a registry sent, checked before anything uses it."""
    if not isinstance(value, str) or not VERSION_TEXT.fullmatch(value):
        raise _shape(host, what, f"a version that is no version: {quoted(repr(value), 60)}")
    return value


def go_escape(path: str) -> str:
    """A module path or version as the module proxy protocol writes it in a URL: each
    upper-case letter as ``!`` and its lower-case form (golang.org/x/mod/module)."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group().lower(), path)


class Upstream:
    """The registries of ``urls``, one client per host, each document read once."""

    def __init__(self, urls: Upstreams, *, retry: RetryPolicy = QUICK) -> None:
        self.urls = urls
        self.retry = retry
        self._hosts: dict[str, Index] = {}
        self._cache: dict[str, Any] = {}
        self.down: dict[str, str] = {}  # host → why it counts as unreachable for this run

    def close(self) -> None:
        for index in self._hosts.values():
            index.session.close()

    def _index(self, url: str) -> Index:
        parts = urlsplit(url)
        host = parts.netloc
        if host not in self._hosts:
            self._hosts[host] = Index(host, scheme=parts.scheme, retry=self.retry)
        return self._hosts[host]

    def get(
        self, url: str, *, what: str, limit: int, headers: Mapping[str, str] | None = None
    ) -> bytes | None:
        """The body at ``url``, read once per run; a host found unreachable is not tried again."""
        if url in self._cache:
            cached: bytes | None = self._cache[url]
            return cached
        host = urlsplit(url).netloc
        if host in self.down:
            raise Unreachable(self.down[host])
        index = self._index(url)
        log.detail(f"  GET {url}")
        try:
            body = index.fetch(url, what=what, limit=limit, headers=headers)
        except Unreachable:
            why = f"{host} did not answer ({self.retry.attempts} tries)"
            self.down[host] = why
            raise Unreachable(why) from None
        self._cache[url] = body
        return body

    def _json(self, url: str, what: str, limit: int = MAX_METADATA) -> Any | None:
        body = self.get(url, what=what, limit=limit)
        if body is None:
            return None
        host = urlsplit(url).netloc
        try:
            return json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _shape(host, what, "not JSON") from None

    # --- PyPI ------------------------------------------------------------------------------

    def _pypi(self, project: str) -> dict[str, list[dict[str, Any]]]:
        """PyPI's releases of ``project``: version → its files."""
        url = f"{self.urls.pypi}/{quote(project)}/json"
        host, what = urlsplit(url).netloc, f"PyPI project {project}"
        data = self._json(url, what)
        if data is None:
            raise RegistryError(f"registry {host}: {what}: no such project")
        releases = data.get("releases") if isinstance(data, dict) else None
        if not isinstance(releases, dict):
            raise _shape(host, what, "no releases mapping")
        out: dict[str, list[dict[str, Any]]] = {}
        for version, files in releases.items():
            if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
                raise _shape(host, what, f"the files of {quoted(str(version), 40)} are no list")
            out[_version(host, what, version)] = files
        return out

    def pypi_versions(self, project: str) -> list[str]:
        """Versions with at least one file that is not yanked."""
        return [
            version
            for version, files in self._pypi(project).items()
            if any(not f.get("yanked", False) for f in files)
        ]

    def pypi_sha256(self, project: str, version: str) -> dict[str, str]:
        """Each file of a release → the sha256 PyPI publishes for it."""
        files = self._pypi(project).get(version, [])
        host = urlsplit(self.urls.pypi).netloc
        out = {}
        for item in files:
            name, digests = item.get("filename"), item.get("digests")
            digest = digests.get("sha256") if isinstance(digests, dict) else None
            if (
                not isinstance(name, str)
                or not isinstance(digest, str)
                or not SHA256.fullmatch(digest)
            ):
                raise _shape(host, f"PyPI project {project} {version}", "a file without sha256")
            out[name] = digest
        return out

    # --- npm -------------------------------------------------------------------------------

    def _npm(self, package: str) -> dict[str, dict[str, Any]]:
        """The registry's versions of ``package``: version → its manifest."""
        url = f"{self.urls.npm}/{quote(package, safe='@')}"
        host, what = urlsplit(url).netloc, f"npm package {package}"
        key = f"npm:{url}"
        if key not in self._cache:
            body = self.get(url, what=what, limit=MAX_METADATA, headers=NPM_ABBREVIATED)
            if body is None:
                raise RegistryError(f"registry {host}: {what}: no such package")
            try:
                data = json.loads(body)
            except (UnicodeDecodeError, ValueError, RecursionError):
                raise _shape(host, what, "not JSON") from None
            versions = data.get("versions") if isinstance(data, dict) else None
            if not isinstance(versions, dict) or not all(
                isinstance(v, dict) for v in versions.values()
            ):
                raise _shape(host, what, "no versions mapping")
            self._cache[key] = {_version(host, what, v): m for v, m in versions.items()}
        result: dict[str, dict[str, Any]] = self._cache[key]
        return result

    def npm_versions(self, package: str) -> list[str]:
        """Versions that are not deprecated."""
        return [v for v, manifest in self._npm(package).items() if not manifest.get("deprecated")]

    def npm_integrity(self, package: str, version: str) -> str:
        """npm's ``sha512-…`` integrity of a version's tarball."""
        dist = self._npm(package).get(version, {}).get("dist")
        integrity = dist.get("integrity") if isinstance(dist, dict) else None
        if not isinstance(integrity, str) or not INTEGRITY.fullmatch(integrity):
            host = urlsplit(self.urls.npm).netloc
            raise _shape(host, f"npm package {package} {version}", "no sha512 integrity")
        return integrity

    # --- Maven -----------------------------------------------------------------------------

    def maven_versions(self, group: str, artifact: str) -> list[str]:
        url = f"{self.urls.maven}/{group.replace('.', '/')}/{artifact}/maven-metadata.xml"
        host, what = urlsplit(url).netloc, f"Maven artifact {group}:{artifact}"
        body = self.get(url, what=what, limit=MAX_SMALL)
        if body is None:
            raise RegistryError(f"registry {host}: {what}: no such artifact")
        if b"<!DOCTYPE" in body or b"<!ENTITY" in body:  # no DTD, no entity: no expansion
            raise _shape(host, what, "a document type declaration")
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            raise _shape(host, what, "not XML") from None
        return [
            _version(host, what, (v.text or "").strip())
            for v in root.findall("./versioning/versions/version")
        ]

    def maven_sha1(self, url: str) -> str:
        """The SHA-1 a Maven repository publishes beside an artifact (``<url>.sha1``)."""
        host, what = urlsplit(url).netloc, f"{urlsplit(url).path.rsplit('/', 1)[-1]}.sha1"
        body = self.get(url + ".sha1", what=what, limit=4096)
        text = (body or b"").decode("ascii", "replace").strip().split(" ")[0].lower()
        if not SHA1.fullmatch(text):
            raise _shape(host, what, "no SHA-1 there")
        return text

    # --- the Go module proxy ----------------------------------------------------------------

    def _goproxy(self) -> str:
        if not self.urls.goproxy:
            msg = "GOPROXY names no module proxy read here (off, direct, or a URL with a user)"
            raise Unreachable(msg)
        return self.urls.goproxy

    def go_versions(self, module: str) -> list[str]:
        """The module's tagged versions (``@v/list``)."""
        url = f"{self._goproxy()}/{go_escape(module)}/@v/list"
        host, what = urlsplit(url).netloc, f"Go module {module}"
        body = self.get(url, what=what, limit=MAX_SMALL)
        if body is None:
            raise RegistryError(f"registry {host}: {what}: no such module")
        lines = body.decode("utf-8", "replace").split()
        return [_version(host, what, line) for line in lines]

    def go_latest(self, module: str) -> str | None:
        """The version ``@latest`` names: the newest release, or for a module with none the
        pseudo-version of its newest commit."""
        url = f"{self._goproxy()}/{go_escape(module)}/@latest"
        host, what = urlsplit(url).netloc, f"Go module {module} @latest"
        data = self._json(url, what, MAX_SMALL)
        if data is None:
            return None
        if not isinstance(data, dict):
            raise _shape(host, what, "no Version")
        return _version(host, what, data.get("Version"))

    def go_sum(self, module: str, version: str) -> str:
        """The module tree's hash (``h1:…``) as Go's checksum database records it, read
        through the proxy (``/sumdb/sum.golang.org/lookup/…``)."""
        escaped = f"{go_escape(module)}@{go_escape(version)}"
        url = f"{self._goproxy()}/sumdb/sum.golang.org/lookup/{escaped}"
        host, what = urlsplit(url).netloc, f"checksum database: {module}@{version}"
        body = self.get(url, what=what, limit=MAX_SMALL)
        for line in (body or b"").decode("utf-8", "replace").splitlines():
            fields = line.split(" ")
            if fields[:2] == [module, version] and len(fields) == 3 and GO_SUM.fullmatch(fields[2]):
                return fields[2]
        raise _shape(host, what, "no record of that version")

    # --- nodejs.org ---------------------------------------------------------------------------

    def nodejs_versions(self) -> list[str]:
        url = f"{self.urls.nodejs}/index.json"
        host, what = urlsplit(url).netloc, "Node.js releases (index.json)"
        data = self._json(url, what, 8 << 20)
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise _shape(host, what, "no list of releases")
        return [_version(host, what, r.get("version")).removeprefix("v") for r in data]

    def nodejs_sha256(self, version: str) -> dict[str, str]:
        """Each file of a Node.js release → its sha256 (``SHASUMS256.txt``)."""
        url = f"{self.urls.nodejs}/v{version}/SHASUMS256.txt"
        host, what = urlsplit(url).netloc, f"Node.js {version} SHASUMS256.txt"
        body = self.get(url, what=what, limit=MAX_SMALL)
        out = {}
        for line in (body or b"").decode("utf-8", "replace").splitlines():
            digest, _, name = line.partition("  ")
            if SHA256.fullmatch(digest) and name:
                out[name.strip()] = digest
        if not out:
            raise _shape(host, what, "no sha256 lines")
        return out

    # --- newest --------------------------------------------------------------------------------

    def newest(self, kind: Kind, package: str, pinned: str, below: str | None = None) -> str | None:
        """The newest stable version of ``package`` that the pin may move to (None: the
        registry lists none). ``package`` is the registry's name: a PyPI project, an npm
        package, ``group:artifact``, a Go module, or a Node.js major line."""
        if kind == "pypi":
            return newest_of(kind, self.pypi_versions(package), below=below)
        if kind == "npm":
            return newest_of(kind, self.npm_versions(package), below=below)
        if kind == "maven":
            group, _, artifact = package.partition(":")
            return newest_of(kind, self.maven_versions(group, artifact), below=below)
        if kind == "nodejs":
            major = semver.Version.parse(pinned).major
            line = [v for v in self.nodejs_versions() if parses(kind, v)]
            same = [v for v in line if semver.Version.parse(v).major == major]
            return newest_of(kind, same, below=below)
        found = newest_of(kind, self.go_versions(package), below=below)
        if found is None and is_pseudo_version(pinned):
            latest = self.go_latest(package)
            if latest is not None and is_pseudo_version(latest):
                return newest_of(kind, [latest], below=below, stable_only=False)
        return found


def digests_as_json(values: Mapping[str, str]) -> dict[str, str]:
    return dict(sorted(values.items()))


# --- the outdated check of the pins -----------------------------------------------------------


@dataclass(kw_only=True)
class InputReport:
    """One pin against its registry: ``outdated`` (``newest`` is newer), ``current``, or
    ``not checked`` (``note`` says why)."""

    name: str
    kind: Kind
    package: str
    pinned: str
    newest: str | None = None
    state: Literal["outdated", "current", "not checked"] = "not checked"
    below: str | None = None
    runtimes: tuple[str, ...] = ()
    note: str = ""

    @property
    def registry(self) -> str:
        return REGISTRY_NAMES[self.kind]

    def as_json(self) -> dict[str, Any]:
        return {
            "input": self.name, "kind": self.kind, "package": self.package,
            "pinned": self.pinned, "newest": self.newest, "state": self.state,
            "below": self.below, "runtimes": list(self.runtimes), "note": self.note,
        }  # fmt: skip


@dataclass(kw_only=True)
class InputsReport:
    inputs: list[InputReport] = field(default_factory=list)
    unreachable: dict[str, list[str]] = field(default_factory=dict)  # why → input names
    unwatched: list[Unwatched] = field(default_factory=list)
    unlocked: dict[str, list[str]] = field(default_factory=dict)  # package → runtimes

    @property
    def outdated(self) -> list[InputReport]:
        return [i for i in self.inputs if i.state == "outdated"]

    def as_json(self) -> dict[str, Any]:
        return {
            "checked": [i.as_json() for i in self.inputs],
            "unreachable": self.unreachable,
            "unwatched": [
                {"host": u.host, "inputs": list(u.inputs), "runtimes": list(u.runtimes)}
                for u in self.unwatched
            ],
            "unlocked": self.unlocked,
        }


def check_pin(upstream: Upstream, pin: Pin) -> InputReport:
    """What ``pin``'s registry lists now, against the pinned version; an Unreachable
    registry propagates (the caller says so once per registry), any other refusal is the
    report's note."""
    report = InputReport(
        name=pin.name, kind=pin.kind, package=pin.package, pinned=pin.version, below=pin.below,
        runtimes=pin.runtimes,
    )  # fmt: skip
    if not parses(pin.kind, pin.version):
        report.note = f"{pin.version!r} is no {pin.kind} version"
        return report
    try:
        newest = upstream.newest(pin.kind, pin.package, pin.version, pin.below)
    except Unreachable:
        raise
    except RegistryError as exc:
        report.note = str(exc)
        return report
    report.newest = newest
    if newest is not None and newer(pin.kind, newest, pin.version):
        report.state = "outdated"
    else:
        report.state = "current"
    return report


def check_pins(upstream: Upstream, pins: Pins) -> InputsReport:
    """Every pin against its registry; a registry that does not answer is named once, with
    the pins it leaves unchecked."""
    report = InputsReport(unwatched=list(pins.unwatched), unlocked=dict(pins.unlocked))
    for pin in pins.pins:
        try:
            report.inputs.append(check_pin(upstream, pin))
        except Unreachable as exc:
            entry = InputReport(name=pin.name, kind=pin.kind, package=pin.package,
                                pinned=pin.version, below=pin.below, runtimes=pin.runtimes,
                                note=str(exc))  # fmt: skip
            report.inputs.append(entry)
            report.unreachable.setdefault(str(exc), []).append(pin.name)
    return report
