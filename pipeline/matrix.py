"""runtimes.yaml → the runtime matrix (operating systems, families, runtimes, targets).

YAML is parsed once, here, into frozen dataclasses. Validation has two passes: a JSON Schema
(``runtimes.schema.json``) for shape and types, then the rules that relate entries to each other
(duplicate ids, one tag per runtime of a family, the declared `latest` of each family,
references to operating systems and families, architectures an OS supports,
templates that exist). Every error names the file, the line and the field path, and says what
was expected.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import jsonschema
import yaml

from .errors import ConfigurationError, UsageError
from .schema_errors import dotted, explain, validator
from .workdir import TooLarge, read_bounded

DEFAULT_MATRIX: Final = Path("runtimes.yaml")
TEMPLATES_DIR: Final = Path(__file__).resolve().parent.parent / "templates"
DEPRECATION_WARNING_DAYS: Final = 90
# Tags publishing writes itself: a runtime's ``tag`` may not take them.
RESERVED_TAGS: Final = ("latest", "latest-x86_64", "latest-arm64")


@dataclass(frozen=True, kw_only=True)
class Arch:
    """A Lambda architecture and its names in the tools that meet it."""

    name: str  # Lambda's name: x86_64, arm64
    docker: str  # OCI/Docker platform architecture: amd64, arm64
    uname: str  # what `uname -m` prints inside: x86_64, aarch64
    debian: str  # Debian's architecture name: amd64, arm64
    runner: str  # GitHub Actions runner label that builds it natively


ARCHES: Final[dict[str, Arch]] = {
    "x86_64": Arch(
        name="x86_64", docker="amd64", uname="x86_64", debian="amd64", runner="ubuntu-24.04"
    ),
    "arm64": Arch(
        name="arm64", docker="arm64", uname="aarch64", debian="arm64", runner="ubuntu-24.04-arm"
    ),
}


DEBIAN_SECURITY: Final = "http://deb.debian.org/debian-security"
# Debian's archive keys (the debian-archive-keyring package), as apt reads them.
DEBIAN_KEYRING: Final = "/usr/share/keyrings/debian-archive-keyring.gpg"


@dataclass(frozen=True, kw_only=True)
class AptArchive:
    """One apt repository a Debian base (and its images' apt) installs from."""

    uri: str
    suite: str  # a suite name, or a path ending in "/" for a flat repository
    components: tuple[str, ...] = ("main",)
    trusted: bool = False  # [trusted=yes]: an unsigned repository (tests, private mirrors)
    keyring: str | None = None  # what signs it; None: its base's keyring


@dataclass(frozen=True, kw_only=True)
class RootfsBase:
    """An OS base the pipeline builds itself from distribution packages (mmdebstrap): from the
    suite, its -updates and its -security archive, plus any extra archives."""

    suite: str
    mirror: str
    security_mirror: str = DEBIAN_SECURITY
    components: tuple[str, ...] = ("main",)
    variant: str = "minbase"
    include: tuple[str, ...] = ()
    extra_archives: tuple[AptArchive, ...] = ()
    keyring: str = DEBIAN_KEYRING  # signs the suite, -updates and -security (InRelease)


@dataclass(frozen=True, kw_only=True)
class ImageBase:
    """An OS base pulled from a registry; its digest is pinned in the lock file."""

    reference: str


@dataclass(frozen=True, kw_only=True)
class OperatingSystem:
    id: str
    name: str
    architectures: tuple[str, ...]
    base: RootfsBase | ImageBase
    packages: str  # its package manager: apt, yum or dnf
    tools: tuple[str, ...] = ()  # packages every image needs to unpack its inputs
    toolchain: tuple[str, ...] = ()  # packages a build stage needs to compile native parts


@dataclass(frozen=True, kw_only=True)
class Unpack:
    """How an archive input is laid out: leading path parts to drop, and configure flags when
    it is a source tree to compile (``./configure --prefix=/var/lang <flags> && make install``)."""

    strip: int = 0
    compile: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class GoBuild:
    """How a built input is made: ``go build`` of one package of a Go module at the input's
    version, with a pinned toolchain, for each architecture (pipeline/gobuild.py)."""

    module: str  # github.com/aws/aws-lambda-runtime-interface-emulator
    package: str  # ./cmd/aws-lambda-rie
    toolchain: str  # go1.26.8: the same toolchain gives the same bytes
    ldflags: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        """The package's last path element: the name ``go build`` gives the binary."""
        return self.package.rstrip("/").rsplit("/", 1)[-1]


# A Go module version as the go command writes it: semver or a pseudo-version (v0.0.0-…).
MATRIX_MAX_BYTES: Final = 8 << 20  # runtimes.yaml is about 50 kB; /dev/zero is endless
GO_VERSION: Final = re.compile(r"v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+incompatible)?")


@dataclass(frozen=True, kw_only=True)
class Input:
    """A pinned artifact: downloaded from a URL (one per architecture, or one for all), or
    built by the pipeline from a Go module (``build``), one per architecture.

    ``sha256`` holds checksums written in runtimes.yaml; the lock file holds the others.
    """

    name: str
    version: str
    urls: tuple[tuple[str, str], ...] = ()  # (arch or "any", url); none for a built input
    sha256: tuple[tuple[str, str], ...] = ()
    unpack: Unpack | None = None
    install_as: str | None = None
    build: GoBuild | None = None
    release: str | None = None  # the upstream release this version is, when it is not one

    def key(self, arch: str) -> str:
        """The lock-file key of this input for an architecture: the arch, or ``any``."""
        return "any" if dict(self.urls).keys() == {"any"} else arch

    def has_arch(self, arch: str) -> bool:
        return self.build is not None or self.key(arch) in dict(self.urls)

    def url(self, arch: str) -> str:
        return dict(self.urls)[self.key(arch)]

    def source(self, arch: str) -> str:
        """Where the artifact comes from: its URL, or the Go module it is built from."""
        if self.build is not None:
            return f"{self.build.module}@{self.version} {self.build.package}"
        return self.url(arch)

    def filename(self, arch: str) -> str:
        if self.build is not None:
            return self.install_as or self.build.command
        return self.url(arch).rstrip("/").rsplit("/", 1)[-1]

    def declared_sha256(self, arch: str) -> str | None:
        return dict(self.sha256).get(self.key(arch))


@dataclass(frozen=True, kw_only=True)
class Family:
    id: str
    name: str
    template: str
    sdk: str | None = None  # the title of the SDK column in the runtime tables
    # The packages whose versions, as the lock pins them, are the SDK column (pins.sdk_column).
    sdk_packages: tuple[str, ...] = ()
    latest: str | None = None  # the runtime id the family's ``latest`` tags name (declared)
    environment: tuple[tuple[str, str], ...] = ()  # extra ENV of every image of the family
    destinations: tuple[tuple[str, str], ...] = ()  # input role → where its files go


@dataclass(frozen=True, kw_only=True)
class Install:
    """What a runtime's template installs on top of the OS base."""

    apt: tuple[str, ...] = ()
    rpm: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    npm: tuple[str, ...] = ()  # install.npm, then the packages of its install.npm_sets

    def os_packages(self, manager: str) -> tuple[str, ...]:
        return self.apt if manager == "apt" else self.rpm


@dataclass(frozen=True, kw_only=True)
class Runtime:
    id: str
    name: str
    family: Family
    version: str
    tag: str
    os: OperatingSystem
    architectures: tuple[str, ...]
    sdk: str | None
    deprecation: dt.date | None
    install: Install
    inputs: tuple[tuple[str, tuple[Input, ...]], ...] = ()  # (role, inputs): language, ric…
    preview: bool = False  # listed and built, never its family's latest
    # pin name → the version it stays below, for this runtime (over the matrix's own)
    upgrade_below: tuple[tuple[str, str], ...] = ()

    def all_inputs(self) -> list[Input]:
        return [i for _, group in self.inputs for i in group]

    def arch_tag(self, arch: str) -> str:
        """The registry tag of the runtime's single-architecture image: ``<tag>-<arch>``."""
        return f"{self.tag}-{arch}"

    def state(self, today: dt.date) -> str:
        """supported, deprecating (within 90 days) or deprecated; preview for a runtime AWS
        publishes as a preview (listed and built, never a family's latest)."""
        if self.deprecation is None:
            return "preview" if self.preview else "supported"
        if self.deprecation <= today:
            return "deprecated"
        if (self.deprecation - today).days <= DEPRECATION_WARNING_DAYS:
            return "deprecating"
        return "supported"

    def as_json(self, today: dt.date, sdk: str | None = None) -> dict[str, Any]:
        """What ``lambda-images list --json`` prints of the runtime, its state as of ``today``;
        ``sdk``: the SDK column (pins.sdk_column: from the lock), else runtimes.yaml's."""
        return {
            "id": self.id, "name": self.name, "family": self.family.id, "version": self.version,
            "tag": self.tag, "os": self.os.id, "os_name": self.os.name,
            "architectures": list(self.architectures), "sdk": sdk or self.sdk,
            "deprecation": self.deprecation.isoformat() if self.deprecation else None,
            "state": self.state(today),
        }  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Target:
    """One cell of the matrix: a runtime on one architecture."""

    runtime: Runtime
    arch: Arch
    namespace: str = "lambda-images"  # of local image names (Settings.namespace)

    @property
    def key(self) -> str:
        return f"{self.runtime.id}/{self.arch.name}"

    @property
    def image_tag(self) -> str:
        """Where the built image is found in the local engine: <namespace>/<runtime>:<arch>."""
        return f"{self.namespace}/{self.runtime.id}:{self.arch.name}"

    @property
    def published_tag(self) -> str:
        """The registry tag this cell's image is published under: ``<tag>-<arch>``."""
        return self.runtime.arch_tag(self.arch.name)

    @property
    def base_image(self) -> str:
        """The local name of the target's OS base image (loaded or pulled by the base stage)."""
        return f"{self.namespace}/base-{self.runtime.os.id}:{self.arch.name}"


@dataclass(frozen=True, kw_only=True)
class Matrix:
    path: Path
    operating_systems: dict[str, OperatingSystem]
    families: dict[str, Family]
    runtimes: tuple[Runtime, ...]
    namespace: str = "lambda-images"  # of local image names (Settings.namespace)
    templates_dir: Path = TEMPLATES_DIR
    # pin name → the version `outdated` and `lock --upgrade` keep it below (every runtime)
    upgrade_below: tuple[tuple[str, str], ...] = ()
    _by_id: dict[str, Runtime] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({rt.id: rt for rt in self.runtimes})

    def latest(self, family: Family) -> Runtime | None:
        """The runtime the family's ``latest`` tags name, as runtimes.yaml declares it."""
        return self._by_id[family.latest] if family.latest else None

    def runtime(self, runtime_id: str) -> Runtime:
        try:
            return self._by_id[runtime_id]
        except KeyError:
            msg = f"unknown runtime {runtime_id!r} (not in {self.path})"
            close = difflib.get_close_matches(runtime_id, self._by_id, n=1)
            if close:
                msg += f"; did you mean {close[0]!r}?"
            raise UsageError(msg) from None

    def select(
        self,
        runtime_ids: Sequence[str] = (),
        *,
        include_deprecated: bool = False,
        today: dt.date | None = None,
    ) -> list[Runtime]:
        """Runtimes named (all when none), leaving out deprecated ones unless asked.

        Naming a deprecated runtime without ``include_deprecated`` is an error rather than a
        silent no-op.
        """
        today = today or dt.date.today()
        chosen = [self.runtime(r) for r in runtime_ids] if runtime_ids else list(self.runtimes)
        if include_deprecated:
            return chosen
        for rt in chosen:
            if runtime_ids and rt.state(today) == "deprecated":
                msg = (
                    f"{rt.id} was deprecated on {rt.deprecation}; "
                    "pass --include-deprecated to use it anyway"
                )
                raise UsageError(msg)
        return [rt for rt in chosen if rt.state(today) != "deprecated"]

    def job_matrix(self, targets: Iterable[Target]) -> dict[str, list[dict[str, str]]]:
        """A GitHub Actions job matrix: one entry per runtime x architecture and its runner."""
        return {
            "include": [
                {"runtime": t.runtime.id, "arch": t.arch.name, "runner": t.arch.runner}
                for t in targets
            ]
        }

    def targets(self, runtimes: Iterable[Runtime], arches: Sequence[str] = ()) -> list[Target]:
        for a in arches:
            if a not in ARCHES:
                msg = f"unknown architecture {a!r}; expected one of {', '.join(ARCHES)}"
                raise UsageError(msg)
        out = []
        for rt in runtimes:
            for a in rt.architectures:
                if not arches or a in arches:
                    out.append(Target(runtime=rt, arch=ARCHES[a], namespace=self.namespace))
        return out


# --- loading -------------------------------------------------------------------------------

Path_ = tuple[str | int, ...]


# Aliases let a few lines stand for an exponential number of nodes ("billion laughs"): a matrix
# needs none, so a handful are allowed and the expanded document is capped.
MAX_ALIASES: Final = 50
MAX_NODES: Final = 50_000  # the whole matrix of 2026 has about 1,000
# C0 and C1 control characters (newline, tab, NUL, ESC…) and the Unicode line separators: no
# value of the matrix may hold one, as each would end or bend a line of a Dockerfile or command.
# Nor an invisible formatting character (Unicode's category Cf: U+202E reverses the text
# around it, U+200B and U+FEFF are not seen at all), which would make a name read as another.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# libyaml (PyYAML's C parser) when this PyYAML has it: the matrix is read in every command and
# in hundreds of tests, and the pure-Python parser takes ten times as long.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _count_aliases(root: yaml.Node) -> None:
    """Raise _TooBig at the (MAX_ALIASES + 1)th alias of a composed document. An alias is a
    second reference to a node (the composer shares the node, it does not copy it), so they
    are counted over the graph, each node once, before anything is expanded."""
    seen = {id(root)}
    todo = [root]
    aliases = 0
    while todo:
        node = todo.pop()
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            continue
        for child in children:
            if id(child) not in seen:
                seen.add(id(child))
                todo.append(child)
                continue
            aliases += 1
            if aliases > MAX_ALIASES:
                line = node.start_mark.line + 1
                raise _TooBig(f"line {line}: more than {MAX_ALIASES} YAML aliases (*name)")


class _TooBig(Exception):
    """The document is larger than a matrix can be, once its aliases are expanded."""


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        byte = raw[exc.start]
        msg = f"{path}:{line}: not UTF-8 (byte 0x{byte:02x}); expected a UTF-8 text file"
        raise ConfigurationError(msg) from None


class _Located:
    """The plain data of a YAML document plus the line of every node, keyed by path."""

    def __init__(self, path: Path, text: str) -> None:
        self.file = path
        self.lines: dict[Path_, int] = {}
        self.nodes = 0
        loader: yaml.SafeLoader | None = None
        try:
            loader = _Loader(text)
            node = loader.get_single_node()
            if node is not None:
                _count_aliases(node)
            self.data = self._convert(loader, node, ()) if node is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 0
            msg = f"{path}:{line}: not valid YAML: {exc.problem or exc}"
            raise ConfigurationError(msg) from None
        except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, ESC…)
            line = text[: exc.position].count("\n") + 1
            msg = f"{path}:{line}: not valid YAML: character U+{exc.character:04X} is not allowed"
            raise ConfigurationError(msg) from None
        except yaml.YAMLError as exc:
            msg = f"{path}: not valid YAML: {str(exc).splitlines()[0]}"
            raise ConfigurationError(msg) from None
        except _TooBig as exc:
            raise ConfigurationError(f"{path}: {exc}; a matrix needs no more") from None
        except RecursionError:
            msg = f"{path}: nested too deeply (or an alias refers to itself)"
            raise ConfigurationError(msg) from None
        finally:
            if loader is not None:
                loader.dispose()

    def _convert(self, loader: yaml.SafeLoader, node: yaml.Node, where: Path_) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            line = node.start_mark.line + 1
            raise _TooBig(f"line {line}: more than {MAX_NODES} values once aliases are expanded")
        self.lines[where] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node)
                if not isinstance(key, str):
                    line = key_node.start_mark.line + 1
                    msg = f"{self.file}:{line}: {dotted(where)}: keys must be strings"
                    raise ConfigurationError(msg)
                self._printable(key, key_node, (*where, key))
                if key in out:
                    line = key_node.start_mark.line + 1
                    msg = f"{self.file}:{line}: {dotted((*where, key))}: key appears twice"
                    raise ConfigurationError(msg)
                out[key] = self._convert(loader, value_node, (*where, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(loader, v, (*where, i)) for i, v in enumerate(node.value)]
        try:
            value = loader.construct_object(node)
        except ValueError:  # e.g. 2024-02-30: looks like a timestamp, is no date
            return node.value
        if isinstance(value, dt.date | dt.datetime):
            return value.isoformat()  # dates are checked as strings by the schema
        if isinstance(value, str):
            self._printable(value, node, where)
        return value

    def _printable(self, value: str, node: yaml.Node, where: Path_) -> None:
        found = _CONTROL.search(value)
        invisible = next((c for c in value if unicodedata.category(c) == "Cf"), None)
        if found or invisible:
            self.lines.setdefault(where, node.start_mark.line + 1)
            char = ord(found.group()) if found else ord(invisible or " ")
            kind = "control" if found else "invisible formatting"
            raise self.fail(
                where, f"holds the {kind} character U+{char:04X}; expected printable text"
            )

    def line(self, where: Path_) -> int:
        while where not in self.lines and where:
            where = where[:-1]
        return self.lines.get(where, 1)

    def fail(self, where: Path_, message: str) -> ConfigurationError:
        return ConfigurationError(f"{self.file}:{self.line(where)}: {dotted(where)}: {message}")


def _schema() -> dict[str, Any]:
    text = resources.files("pipeline").joinpath("runtimes.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _schema_message(error: jsonschema.ValidationError, doc: _Located) -> ConfigurationError:
    where, what = explain(error)
    return doc.fail(where, what)


def read_matrix_text(path: Path) -> str:
    """runtimes.yaml's text, read within its bound; ConfigurationError when it cannot be."""
    try:
        return _decode(path, read_bounded(path, MATRIX_MAX_BYTES))
    except FileNotFoundError:
        msg = f"{path}: no such file (pass --matrix PATH, or run where runtimes.yaml is)"
        raise ConfigurationError(msg) from None
    except TooLarge as exc:
        raise ConfigurationError(f"{exc}; expected a runtime matrix (runtimes.yaml)") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror}") from None


def load_matrix(
    path: Path = DEFAULT_MATRIX,
    *,
    templates_dir: Path | None = None,
    namespace: str = "lambda-images",
    text: str | None = None,
) -> Matrix:
    """Read and validate runtimes.yaml; raise ConfigurationError naming file, line and field.
    ``text``: the file's text as it would be (``lock --upgrade`` checks its edit before
    writing it), instead of what ``path`` holds.

    Templates are read from ``templates/`` beside the matrix file when there is one, else from
    the checkout the package was installed from.
    """
    if templates_dir is None:
        beside = path.parent / TEMPLATES_DIR.name
        templates_dir = beside if beside.is_dir() else TEMPLATES_DIR
    if text is None:
        text = read_matrix_text(path)
    doc = _Located(path, text)
    errors = sorted(
        validator(_schema()).iter_errors(doc.data), key=lambda e: doc.line(tuple(e.path))
    )
    if errors:
        # The first error in file order; the deepest one when a oneOf/anyOf had several.
        raise _schema_message(errors[0], doc)
    return dataclasses.replace(_build(doc, templates_dir), namespace=namespace)


def _build(doc: _Located, templates_dir: Path) -> Matrix:
    data: dict[str, Any] = doc.data or {}
    systems: dict[str, OperatingSystem] = {}
    for os_id, raw in data["operating_systems"].items():
        base_raw = raw["base"]
        base: RootfsBase | ImageBase
        if "rootfs" in base_raw:
            r = base_raw["rootfs"]
            base = RootfsBase(
                suite=r["suite"],
                mirror=r["mirror"],
                security_mirror=r.get("security_mirror", DEBIAN_SECURITY),
                components=tuple(r.get("components", ("main",))),
                variant=r.get("variant", "minbase"),
                include=tuple(r.get("include", ())),
                extra_archives=tuple(
                    AptArchive(
                        uri=a["uri"],
                        suite=a["suite"],
                        components=tuple(
                            a.get("components", () if a["suite"].endswith("/") else ("main",))
                        ),
                        trusted=a.get("trusted", False),
                        keyring=a.get("keyring"),
                    )
                    for a in r.get("extra_archives", ())
                ),
                keyring=r.get("keyring", DEBIAN_KEYRING),
            )
        else:
            base = ImageBase(reference=base_raw["image"]["reference"])
        systems[os_id] = OperatingSystem(
            id=os_id,
            name=raw["name"],
            architectures=tuple(raw["architectures"]),
            base=base,
            packages=raw["packages"],
            tools=tuple(raw.get("tools", ())),
            toolchain=tuple(raw.get("toolchain", ())),
        )

    families: dict[str, Family] = {}
    for fam_id, raw in data["families"].items():
        template_dir = templates_dir / raw["template"]
        if not (template_dir / "Dockerfile.j2").is_file():
            raise doc.fail(
                ("families", fam_id, "template"),
                f"no template {raw['template']!r}: expected "
                f"{templates_dir.name}/{raw['template']}/Dockerfile.j2",
            )
        families[fam_id] = Family(
            id=fam_id,
            name=raw["name"],
            template=raw["template"],
            sdk=raw.get("sdk"),
            sdk_packages=tuple(raw.get("sdk_packages", ())),
            latest=raw.get("latest"),
            environment=tuple(raw.get("environment", {}).items()),
            destinations=tuple(sorted(raw.get("destinations", {}).items())),
        )

    inputs = {name: _input(name, raw) for name, raw in data.get("inputs", {}).items()}
    for name, item in inputs.items():
        if item.build is not None and not GO_VERSION.fullmatch(item.version):
            raise doc.fail(
                ("inputs", name, "version"),
                f"{item.version!r} is not a Go module version; expected a semver or "
                "pseudo-version such as v0.0.0-20261030222936-bef5c4ba774d",
            )

    emulator = data.get("emulator")
    if emulator is not None and emulator not in inputs:
        raise _unknown_ref(doc, ("emulator",), emulator, inputs, "input")

    npm_sets: dict[str, list[str]] = data.get("npm_sets", {})

    runtimes: list[Runtime] = []
    seen: dict[str, int] = {}
    tags: dict[tuple[str, str], tuple[str, int]] = {}  # (family, tag) → runtime id, line
    for i, raw in enumerate(data["runtimes"]):
        where: Path_ = ("runtimes", i)
        rt_id = raw["id"]
        if rt_id in seen:
            raise doc.fail(
                (*where, "id"),
                f"duplicate runtime id {rt_id!r} (first defined on line {seen[rt_id]})",
            )
        seen[rt_id] = doc.line((*where, "id"))
        if raw["family"] not in families:
            raise _unknown_ref(doc, (*where, "family"), raw["family"], families, "family")
        if raw["os"] not in systems:
            raise _unknown_ref(doc, (*where, "os"), raw["os"], systems, "operating system")
        system = systems[raw["os"]]
        for j, arch in enumerate(raw["architectures"]):
            if arch not in system.architectures:
                raise doc.fail(
                    (*where, "architectures", j),
                    f"{system.id} does not support {arch}; expected one of: "
                    f"{', '.join(system.architectures)}",
                )
        roles: list[tuple[str, tuple[Input, ...]]] = []
        for role, names in raw.get("inputs", {}).items():
            names = [names] if isinstance(names, str) else names
            group = []
            for k, name in enumerate(names):
                at: Path_ = (*where, "inputs", role, *((k,) if len(names) > 1 else ()))
                if name not in inputs:
                    raise _unknown_ref(doc, at, name, inputs, "input")
                for arch in raw["architectures"]:
                    if not inputs[name].has_arch(arch):
                        raise doc.fail(
                            at,
                            f"input {name!r} has no url for {arch}; expected urls.{arch} "
                            f"under inputs.{name} (line {doc.line(('inputs', name))}), or drop "
                            f"{arch} from this runtime",
                        )
                group.append(inputs[name])
            roles.append((role, tuple(group)))
        if emulator is not None and "emulator" not in dict(roles):
            # Every image carries the emulator named at the top (role `emulator`).
            for arch in raw["architectures"]:
                if not inputs[emulator].has_arch(arch):
                    raise doc.fail(
                        ("emulator",),
                        f"input {emulator!r} has no url for {arch}, which {rt_id} needs",
                    )
            roles.append(("emulator", (inputs[emulator],)))
        tag = raw.get("tag", str(raw["version"]))
        tag_at: Path_ = (*where, "tag") if "tag" in raw else (*where, "version")
        if tag in RESERVED_TAGS:
            msg = f"tag {tag!r} is written by publishing itself; expected another tag"
            raise doc.fail(tag_at, msg)
        if (raw["family"], tag) in tags:
            other, line = tags[(raw["family"], tag)]
            raise doc.fail(
                tag_at,
                f"{rt_id} would be published as {raw['family']}:{tag}, which {other} (line "
                f"{line}) already is; expected a tag of its own (set `tag:`)",
            )
        tags[(raw["family"], tag)] = (rt_id, doc.line(where))
        install = raw.get("install", {})
        npm = list(install.get("npm", ()))
        for k, set_name in enumerate(install.get("npm_sets", ())):
            if set_name not in npm_sets:
                at = (*where, "install", "npm_sets", k)
                raise _unknown_ref(doc, at, set_name, npm_sets, "npm set")
            # A package named in install.npm keeps that spec over the set's.
            named = {_npm_name(spec) for spec in npm}
            npm += [spec for spec in npm_sets[set_name] if _npm_name(spec) not in named]
        deprecation = raw.get("deprecation")
        runtimes.append(
            Runtime(
                id=rt_id,
                name=raw["name"],
                family=families[raw["family"]],
                version=str(raw["version"]),
                tag=tag,
                os=system,
                architectures=tuple(raw["architectures"]),
                sdk=raw.get("sdk"),
                deprecation=dt.date.fromisoformat(deprecation) if deprecation else None,
                install=Install(
                    apt=tuple(install.get("apt", ())),
                    rpm=tuple(install.get("rpm", ())),
                    pip=tuple(install.get("pip", ())),
                    npm=tuple(npm),
                ),
                inputs=tuple(roles),
                preview=raw.get("preview", False),
                upgrade_below=tuple(sorted(raw.get("upgrade_below", {}).items())),
            )
        )
    for fam_id, family in families.items():
        if family.latest is None:
            continue
        own = {r.id: r for r in runtimes if r.family.id == fam_id}
        if family.latest not in own:
            where = ("families", fam_id, "latest")
            raise _unknown_ref(doc, where, family.latest, own, f"runtime of {fam_id}")
        if own[family.latest].preview:
            msg = (
                f"{family.latest} is a preview runtime, never published as latest; expected a "
                f"runtime of {fam_id} without `preview: true`"
            )
            raise doc.fail(("families", fam_id, "latest"), msg)
    return Matrix(
        path=doc.file,
        operating_systems=systems,
        families=families,
        runtimes=tuple(runtimes),
        templates_dir=templates_dir,
        upgrade_below=tuple(sorted(data.get("upgrade_below", {}).items())),
    )


def _input(name: str, raw: dict[str, Any]) -> Input:
    go = raw.get("go")
    if go is not None:
        return Input(
            name=name,
            version=raw["version"],
            release=raw.get("release"),
            install_as=raw.get("install_as"),
            build=GoBuild(
                module=go["module"],
                package=go["package"],
                toolchain=go["toolchain"],
                ldflags=tuple(go.get("ldflags", ())),
            ),
        )
    urls = raw["urls"] if "urls" in raw else {"any": raw["url"]}
    declared = raw.get("sha256")
    if isinstance(declared, str):
        declared = {key: declared for key in urls}
    unpack = raw.get("unpack")
    return Input(
        name=name,
        version=raw["version"],
        urls=tuple(sorted(urls.items())),
        sha256=tuple(sorted((declared or {}).items())),
        install_as=raw.get("install_as"),
        release=raw.get("release"),
        unpack=None
        if unpack is None
        else Unpack(
            strip=unpack.get("strip", 0),
            compile=tuple(unpack["compile"]) if "compile" in unpack else None,
        ),
    )


def _npm_name(spec: str) -> str:
    """The package name of an npm spec: ``@scope/name@1.2.3`` → ``@scope/name``."""
    name, at, _ = spec[1:].partition("@")
    return spec[0] + name if at else spec


def _unknown_ref(
    doc: _Located, where: Path_, value: str, known: dict[str, Any], what: str
) -> ConfigurationError:
    msg = f"unknown {what} {value!r}; expected one of: {', '.join(known)}"
    close = difflib.get_close_matches(value, known, n=1)
    if close:
        msg += f" (did you mean {close[0]!r}?)"
    return doc.fail(where, msg)
