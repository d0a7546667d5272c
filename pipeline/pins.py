"""Pins: every version the matrix pins an input at, where it is written, and what may replace
it; and the SDK column, read from the lock.

A pin is a version written in runtimes.yaml — a PyPI requirement (``boto3==1.35.99``), an npm
spec (``aws-lambda-ric@3.3.0``), an input's ``version`` with the URLs that carry it (a Maven
artifact, a Node.js archive), a Go module version (AWS's emulator) — or in a Go probe's
``go.mod`` (``aws-lambda-go``). A package the matrix names without a version (the SDK's npm
set) is pinned by the lock alone: its pin is the version the lock resolved, and moving it is
locking again. Each pin says which registry lists its releases (upstream.py), the runtimes it
reaches, and the bound runtimes.yaml gives it (``upgrade_below``: a version it stays below).

Inputs downloaded from hosts no version listing is read from (python.org, GitHub, Corretto,
.NET, RubyGems, NuGet) are *unwatched*: named, never guessed at.

``rewrite`` moves pins in runtimes.yaml's text: each scalar is replaced where it stands (its
quotes kept), so that the file's comments, order and layout stay as they were.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import yaml

from .errors import ConfigurationError, UsageError
from .lock import Lock
from .matrix import Input, Matrix, Runtime
from .settings import Upstreams
from .versions import Kind, is_pseudo_version, valid_bound

Role = Literal["spec", "version", "url", "release", "gomod", "lock"]
YamlPath = tuple[str | int, ...]
# A requirement pinned to one version (runtimes.schema.json's pip_requirement, one `==`).
PIP_PIN: Final = re.compile(
    r"(?P<name>[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)(\[[A-Za-z0-9._,-]+\])?"
    r"(===|==)(?P<version>[A-Za-z0-9.+!_-]+)"
)
PIP_NAME: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
# An exact npm version (semver 2.0); anything else in a spec is a range or a tag.
SEMVER: Final = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?"
)
GO_REQUIRE: Final = re.compile(
    r"^(?:require\s+|\s+)([A-Za-z0-9][A-Za-z0-9._~/-]*)\s+(v[0-9][0-9A-Za-z.+-]*)(?:\s*//.*)?$",
    re.MULTILINE,
)


def normal(name: str) -> str:
    """A package name as its registry compares names (PEP 503 for PyPI; npm's are lowercase)."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the SDK column ------------------------------------------------------------------------


def locked_versions(runtime_id: str, lock: Lock) -> dict[str, str]:
    """Package (normal name) → version, as the lock pins them for a runtime: its wheels, and
    the top level of its npm tree."""
    out: dict[str, str] = {}
    for files in lock.pip.get(runtime_id, {}).values():
        for item in files:
            name, version = item.filename.split("-")[:2]
            out[normal(name)] = version
    for package in lock.npm.get(runtime_id, []):
        name = package.path.removeprefix("node_modules/")
        if "node_modules/" in name:
            continue  # a nested copy, not what `require` finds first
        tarball = package.url.rsplit("/", 1)[-1].removesuffix(".tgz")
        version = tarball.removeprefix(name.rsplit("/", 1)[-1] + "-")
        if version != tarball:
            out[normal(name)] = version
    return out


def pinned_versions(runtime: Runtime) -> dict[str, str]:
    """Package (normal name) → the exact version runtimes.yaml pins it at (``==`` for pip,
    ``@x.y.z`` for npm)."""
    out = {}
    for spec in runtime.install.pip:
        pinned = pip_pin(spec)
        if pinned:
            out[normal(pinned[0])] = pinned[1]
    for spec in runtime.install.npm:
        name, version = npm_pin(spec)
        if version:
            out[normal(name)] = version
    return out


def sdk_column(runtime: Runtime, lock: Lock) -> str | None:
    """The SDK column: the versions of the family's ``sdk_packages`` as the lock pins them for
    the runtime (where it has no lock entry yet, as runtimes.yaml pins them); one package is
    its version alone (``3.1175.0``), several are ``name-version`` each
    (``boto3-1.44.5 botocore-1.44.5``), as AWS's tables write them. None: none is pinned, and
    runtimes.yaml's own ``sdk`` text stands."""
    packages = runtime.family.sdk_packages
    if not packages:
        return None
    locked, pinned = locked_versions(runtime.id, lock), pinned_versions(runtime)
    found = [(p, locked.get(normal(p)) or pinned.get(normal(p))) for p in packages]
    present = [(p, v) for p, v in found if v]
    if len(present) == 1:
        return present[0][1]
    return " ".join(f"{p}-{v}" for p, v in present) or None


# --- specs ----------------------------------------------------------------------------------


def pip_pin(spec: str) -> tuple[str, str] | None:
    """(name, version) of a requirement pinned to one version (``name==1.2.3``); None for a
    range or no version."""
    match = PIP_PIN.fullmatch(spec)
    return (match["name"], match["version"]) if match else None


def pip_name(spec: str) -> str:
    match = PIP_NAME.match(spec)
    return match.group() if match else spec


def npm_pin(spec: str) -> tuple[str, str | None]:
    """(name, exact version or None) of an npm spec: ``@scope/name@1.2.3``."""
    name, at, version = spec[1:].partition("@")
    name = spec[0] + name
    if at and SEMVER.fullmatch(version):
        return name, version
    return name, None


# --- where a downloaded input's releases are listed -----------------------------------------


@dataclass(frozen=True, kw_only=True)
class MavenCoordinates:
    """An artifact's place on a Maven repository, read from its URL under one of the
    repository's bases (``bases``: the configured one, then Maven Central, so a mirror still
    recognises what runtimes.yaml downloads from Central):
    ``<base>/<group path>/<artifact>/<version>/<artifact>-<version>[-classifier].<ext>``."""

    base: str  # the one the URL is under, which a moved pin keeps
    group: str
    artifact: str
    version: str
    filename: str

    @classmethod
    def of(cls, url: str, bases: Sequence[str]) -> MavenCoordinates | None:
        base = _under(url, bases)
        if base is None:
            return None
        parts = url[len(base) + 1 :].split("/")
        if len(parts) < 4:
            return None
        *group, artifact, version, filename = parts
        if not filename.startswith(f"{artifact}-{version}"):
            return None
        return cls(
            base=base, group=".".join(group), artifact=artifact, version=version, filename=filename
        )

    @property
    def name(self) -> str:
        return f"{self.group}:{self.artifact}"

    def url(self, version: str) -> str:
        """The same artifact's URL at another version, under the same base."""
        tail = self.filename[len(f"{self.artifact}-{self.version}") :]
        group = self.group.replace(".", "/")
        return f"{self.base}/{group}/{self.artifact}/{version}/{self.artifact}-{version}{tail}"


def _under(url: str, bases: Sequence[str]) -> str | None:
    """The first of ``bases`` that ``url`` lies under."""
    return next((b for b in bases if url.startswith(b + "/")), None)


def maven_bases(upstreams: Upstreams) -> tuple[str, ...]:
    """Where a Maven artifact's URL is recognised: the configured repository, Maven Central."""
    return tuple(dict.fromkeys((upstreams.maven, Upstreams.maven)))


def nodejs_bases(upstreams: Upstreams) -> tuple[str, ...]:
    """Where a Node.js archive's URL is recognised: the configured index's base, nodejs.org."""
    return tuple(dict.fromkeys((upstreams.nodejs, Upstreams.nodejs)))


NODE_ARCHIVE: Final = re.compile(r"v([0-9]+\.[0-9]+\.[0-9]+)/node-v([0-9]+\.[0-9]+\.[0-9]+)-[^/]+")


def nodejs_version(url: str, bases: Sequence[str]) -> str | None:
    """The Node.js release a nodejs.org archive URL names (``<base>/v24.21.0/node-v24.21.0-…``)."""
    base = _under(url, bases)
    if base is None:
        return None
    match = NODE_ARCHIVE.fullmatch(url[len(base) + 1 :])
    return match[1] if match and match[1] == match[2] else None


# --- pins -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Place:
    """Where a pin is written: a scalar of runtimes.yaml (``path``, and what it holds), a Go
    module's ``go.mod`` (``file``), or only the lock of ``runtime`` (a package named without
    a version)."""

    role: Role
    path: YamlPath = ()
    file: Path | None = None
    runtime: str | None = None


@dataclass(frozen=True, kw_only=True)
class Pin:
    name: str  # what the command line and the output name it by
    kind: Kind
    package: str  # the registry's name: project, package, group:artifact, module, major line
    version: str
    below: str | None = None
    runtimes: tuple[str, ...] = ()
    places: tuple[Place, ...] = ()
    input: Input | None = None  # an input of runtimes.yaml's `inputs:` (URLs, the RIE)

    @property
    def key(self) -> tuple[str, str, str, str | None]:
        return (self.kind, self.package, self.version, self.below)

    def named(self, name: str) -> bool:
        return normal(name) in (normal(self.name), normal(self.package))


@dataclass(frozen=True, kw_only=True)
class Unwatched:
    """Inputs downloaded from a host whose releases are not read here."""

    host: str
    inputs: tuple[str, ...]
    runtimes: tuple[str, ...]


@dataclass(kw_only=True)
class Pins:
    pins: list[Pin] = field(default_factory=list)
    unwatched: list[Unwatched] = field(default_factory=list)
    # package → the runtimes that name it without a version and have no lock entry for it yet
    unlocked: dict[str, list[str]] = field(default_factory=dict)


def _bound(matrix: Matrix, runtime: Runtime | None, names: Sequence[str], kind: Kind) -> str | None:
    """The version a pin stays below: the runtime's own ``upgrade_below``, else the matrix's."""
    for where, bounds in (("runtime", runtime.upgrade_below if runtime else ()),
                          ("matrix", matrix.upgrade_below)):  # fmt: skip
        given = dict(bounds)
        for name in names:
            if name in given:
                if not valid_bound(kind, given[name]):
                    field_ = f"runtimes[{runtime.id}]." if where == "runtime" and runtime else ""
                    msg = (
                        f"{matrix.path}: {field_}upgrade_below.{name}: {given[name]!r} is no "
                        f"{kind} version"
                    )
                    raise ConfigurationError(msg)
                return given[name]
    return None


class _Collector:
    def __init__(
        self, matrix: Matrix, raw: Mapping[str, Any], lock: Lock, upstreams: Upstreams
    ) -> None:
        self.matrix, self.raw, self.lock, self.upstreams = matrix, raw, lock, upstreams
        self.found: dict[tuple[str, str, str, str | None, str], Pin] = {}
        self.unwatched: dict[str, tuple[set[str], set[str]]] = {}
        self.unlocked: dict[str, list[str]] = {}

    def add(self, pin: Pin) -> None:
        key = (*pin.key, pin.name)
        known = self.found.get(key)
        if known is None:
            self.found[key] = pin
            return
        runtimes = tuple(dict.fromkeys((*known.runtimes, *pin.runtimes)))
        places = tuple(dict.fromkeys((*known.places, *pin.places)))
        self.found[key] = Pin(
            name=known.name, kind=known.kind, package=known.package, version=known.version,
            below=known.below, runtimes=runtimes, places=places, input=known.input,
        )  # fmt: skip

    def runtime(self, index: int, runtime: Runtime, raw: Mapping[str, Any]) -> None:
        install = raw.get("install", {})
        locked = locked_versions(runtime.id, self.lock)
        for j, spec in enumerate(install.get("pip", ())):
            at: YamlPath = ("runtimes", index, "install", "pip", j)
            self._package(runtime, "pypi", spec, pip_pin(spec), pip_name(spec), at, locked)
        own = list(install.get("npm", ()))
        for j, spec in enumerate(own):
            name, version = npm_pin(spec)
            pinned = (name, version) if version else None
            self._package(runtime, "npm", spec, pinned, name, ("runtimes", index, "install",
                          "npm", j), locked)  # fmt: skip
        named = {npm_pin(spec)[0] for spec in own}
        for set_name in install.get("npm_sets", ()):
            for k, spec in enumerate(self.raw["npm_sets"][set_name]):
                name, version = npm_pin(spec)
                if name in named or (not version and name not in runtime.family.sdk_packages):
                    continue  # the set's other packages move with the lock, watched via the SDK
                pinned = (name, version) if version else None
                self._package(runtime, "npm", spec, pinned, name, ("npm_sets", set_name, k),
                              locked)  # fmt: skip
        for item in runtime.all_inputs():
            self.input(runtime, item)

    def _package(
        self, runtime: Runtime, kind: Kind, spec: str, pinned: tuple[str, str] | None,
        name: str, at: YamlPath, locked: Mapping[str, str],
    ) -> None:  # fmt: skip
        below = _bound(self.matrix, runtime, [name], kind)
        if pinned is not None:
            place = Place(role="spec", path=at)
            self.add(Pin(name=name, kind=kind, package=name, version=pinned[1], below=below,
                         runtimes=(runtime.id,), places=(place,)))  # fmt: skip
            return
        version = locked.get(normal(name))
        if version is None:
            self.unlocked.setdefault(name, []).append(runtime.id)
            return
        place = Place(role="lock", runtime=runtime.id)
        self.add(Pin(name=name, kind=kind, package=name, version=version, below=below,
                     runtimes=(runtime.id,), places=(place,)))  # fmt: skip

    def input(self, runtime: Runtime, item: Input) -> None:
        at: YamlPath = ("inputs", item.name)
        if item.build is not None:
            places = [Place(role="version", path=(*at, "version"))]
            if item.release is not None:
                places.append(Place(role="release", path=(*at, "release")))
            below = _bound(self.matrix, runtime, [item.name, item.build.module], "go")
            self.add(Pin(name=item.name, kind="go", package=item.build.module,
                         version=item.version, below=below, runtimes=(runtime.id,),
                         places=tuple(places), input=item))  # fmt: skip
            return
        urls = dict(item.urls)
        url_paths = {key: (*at, "url") if key == "any" else (*at, "urls", key) for key in urls}
        kind, package = self._source(item)
        if kind is None:
            hosts = {urlsplit(u).netloc for u in urls.values()}
            for host in hosts:
                inputs, runtimes = self.unwatched.setdefault(host, (set(), set()))
                inputs.add(item.name)
                runtimes.add(runtime.id)
            return
        places = [Place(role="version", path=(*at, "version"))]
        places += [Place(role="url", path=path) for path in url_paths.values()]
        below = _bound(self.matrix, runtime, [item.name], kind)
        self.add(Pin(name=item.name, kind=kind, package=package, version=item.version,
                     below=below, runtimes=(runtime.id,), places=tuple(places),
                     input=item))  # fmt: skip

    def _source(self, item: Input) -> tuple[Kind | None, str]:
        """Which registry lists the releases of a downloaded input, and its name there: every
        URL of the input must be a Maven artifact (or a Node.js archive) at its version."""
        urls = dict(item.urls).values()
        coordinates = [MavenCoordinates.of(u, maven_bases(self.upstreams)) for u in urls]
        names = {c.name for c in coordinates if c is not None and c.version == item.version}
        if len(names) == 1 and None not in coordinates:
            return "maven", names.pop()
        if all(nodejs_version(u, nodejs_bases(self.upstreams)) == item.version for u in urls):
            return "nodejs", item.version.split(".")[0]
        return None, ""

    def probes(self, runtimes: Sequence[Runtime]) -> None:
        """The Go modules a family's probe requires (its go.mod)."""
        for runtime in runtimes:
            go_mod = self.matrix.templates_dir / runtime.family.template / "probe" / "go.mod"
            if not go_mod.is_file():
                continue
            for module, version in GO_REQUIRE.findall(go_mod.read_text("utf-8")):
                name = module.rsplit("/", 1)[-1]
                below = _bound(self.matrix, runtime, [name, module], "go")
                self.add(Pin(name=name, kind="go", package=module, version=version, below=below,
                             runtimes=(runtime.id,),
                             places=(Place(role="gomod", file=go_mod),)))  # fmt: skip


def collect(
    matrix: Matrix, lock: Lock, runtimes: Sequence[Runtime], upstreams: Upstreams, text: str
) -> Pins:
    """Every pin of ``runtimes`` (in matrix order), from runtimes.yaml's ``text``, the lock
    and the probes' go.mod files; inputs no version listing is read for are ``unwatched``."""
    raw = yaml.safe_load(text) or {}
    collector = _Collector(matrix, raw, lock, upstreams)
    index = {rt.id: i for i, rt in enumerate(matrix.runtimes)}
    for runtime in runtimes:
        i = index[runtime.id]
        collector.runtime(i, runtime, raw["runtimes"][i])
    collector.probes(runtimes)
    unwatched = [
        Unwatched(host=host, inputs=tuple(sorted(inputs)), runtimes=tuple(sorted(rts)))
        for host, (inputs, rts) in sorted(collector.unwatched.items())
    ]
    return Pins(
        pins=list(collector.found.values()), unwatched=unwatched, unlocked=collector.unlocked
    )


def select(pins: Iterable[Pin], names: Sequence[str]) -> list[Pin]:
    """The pins ``names`` name (a package, an input or a module; each must name one)."""
    pins = list(pins)
    if not names:
        return pins
    chosen = []
    for name in names:
        found = [p for p in pins if p.named(name)]
        if not found:
            known = sorted({p.name for p in pins})
            msg = f"unknown input {name!r}: no pin of the selected runtimes has that name"
            close = difflib.get_close_matches(name, known, n=1)
            if close:
                msg += f"; did you mean {close[0]!r}?"
            raise UsageError(msg)
        chosen += [p for p in found if p not in chosen]
    return chosen


# --- rewriting runtimes.yaml ----------------------------------------------------------------


def _node(root: yaml.Node, path: YamlPath) -> yaml.Node:
    node = root
    for part in path:
        if isinstance(node, yaml.MappingNode):
            matches = [v for k, v in node.value if getattr(k, "value", None) == part]
            if not matches:
                raise KeyError(path)
            node = matches[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part]
        else:
            raise KeyError(path)
    return node


def new_value(pin: Pin, place: Place, old: str, version: str, upstreams: Upstreams) -> str:
    """What a scalar that writes ``pin`` holds once the pin is ``version``."""
    if place.role == "spec":
        tail = re.escape(pin.version)
        separator = "@" if pin.kind == "npm" else "(?:===|==)"
        replaced, count = re.subn(f"({separator}){tail}$", rf"\g<1>{version}", old)
        if count != 1:
            raise ValueError(old)
        return replaced
    if place.role == "version":
        return version
    if place.role == "release":
        if is_pseudo_version(version):
            stamp = re.findall(r"([0-9]{14})-[0-9a-f]{12}", version)[-1]
            return f"unverified: a commit of {stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}"
        return old
    if place.role == "url":
        if pin.kind == "maven":
            coordinates = MavenCoordinates.of(old, maven_bases(upstreams))
            if coordinates is None:
                raise ValueError(old)
            return coordinates.url(version)
        base = _under(old, nodejs_bases(upstreams))
        if base is None:
            raise ValueError(old)
        tail = old[len(base) + 1 :]
        return f"{base}/" + tail.replace(f"v{pin.version}", f"v{version}")
    raise ValueError(place.role)


def rewrite(text: str, path: Path, moves: Sequence[tuple[Pin, str]], upstreams: Upstreams) -> str:
    """runtimes.yaml's ``text`` with each pin of ``moves`` at its new version: every scalar
    that writes it replaced where it stands, its quotes kept, nothing else touched. A scalar
    written in a form that cannot be edited so (a block scalar, escapes) is a
    ConfigurationError naming its line."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        raise ConfigurationError(f"{path}: empty; expected a runtime matrix")
    edits: list[tuple[int, int, str]] = []
    for pin, version in moves:
        for place in pin.places:
            if place.role in ("gomod", "lock"):
                continue
            node = _node(root, place.path)
            start, end = node.start_mark.index, node.end_mark.index
            written = text[start:end]
            style = getattr(node, "style", None) or ""
            if not isinstance(node, yaml.ScalarNode) or written != f"{style}{node.value}{style}":
                line = node.start_mark.line + 1
                msg = (
                    f"{path}:{line}: {'.'.join(map(str, place.path))} is written in a form "
                    "`lock --upgrade` does not edit (a plain or quoted one-line value is); "
                    f"move {pin.name} to {version} by hand"
                )
                raise ConfigurationError(msg)
            value = new_value(pin, place, node.value, version, upstreams)
            edits.append((start, end, f"{style}{value}{style}"))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text
