"""The lock file (runtimes.lock.json): every downloaded input pinned by sha256.

Checksums are only ever computed here from the artifact itself (``lambda-images lock``); an
input the lock does not cover is *unlocked*, and building a target that needs it fails with a
message that says so. The file sits next to runtimes.yaml.

``archives`` records the state of each Debian base's apt archives as ``lock`` last saw it (the
sha256 of each InRelease and the digest of its package indices, apt.py): a refresh of the lock
shows in its diff when the archives moved. It is a record, not a pin — Debian keeps no old state
reachable here, so a build always uses the archives as they are, and says when they moved.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jsonschema
import jsonschema.protocols

from .errors import ConfigurationError, InputError
from .schema_errors import dotted, explain, validator
from .workdir import TooLarge, read_bounded, write_atomic

if TYPE_CHECKING:
    from .matrix import Target

LOCK_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class LockedFile:
    filename: str
    sha256: str

    @property
    def requirement(self) -> str:
        """A pip requirement line that pins this wheel by name, version and hash."""
        name, version = self.filename.split("-")[:2]
        return f"{name}=={version} --hash=sha256:{self.sha256}"


@dataclass(frozen=True, kw_only=True)
class LockedPackage:
    """One npm tarball of a runtime's package tree, and where it goes under the context."""

    path: str  # node_modules/…, as in npm's package-lock.json
    url: str
    sha256: str | None  # None: unlocked (never downloaded)


LOCK_MAX_BYTES: Final = 64 << 20  # runtimes.lock.json is about 0.5 MB


def _schema_text() -> str:
    return resources.files("pipeline").joinpath("lock.schema.json").read_text("utf-8")


def _schema() -> Any:
    return validator(json.loads(_schema_text()))


def _validated_mark(checked: Path, raw_bytes: bytes) -> Path:
    """The file whose presence says these very bytes passed this very schema: validation is a
    function of both, and checking the 0.5 MB lock took a third of a no-op rebuild."""
    digest = hashlib.sha256(_schema_text().encode("utf-8") + b"\0" + raw_bytes).hexdigest()
    return checked / f"lock-{digest}"


def _schema_message(path: Path, error: jsonschema.ValidationError) -> ConfigurationError:
    """One line naming the file, the field and what was expected there."""
    where, what = explain(error, null_hint=" (or null when unlocked)")
    return ConfigurationError(f"{path}: {dotted(where)}: {what}")


@dataclass(frozen=True, kw_only=True)
class LockedModule:
    """The Go module a built input is made from, with its go.sum hash (``h1:…``): the tree
    the go command verified against the checksum database when ``lambda-images lock`` ran."""

    module: str
    version: str
    sum: str


@dataclass(kw_only=True)
class Lock:
    path: Path
    pip: dict[str, dict[str, list[LockedFile]]] = field(default_factory=dict)
    bases: dict[str, dict[str, str | None]] = field(default_factory=dict)
    inputs: dict[str, dict[str, str | None]] = field(default_factory=dict)
    npm: dict[str, list[LockedPackage]] = field(default_factory=dict)
    go: dict[str, LockedModule] = field(default_factory=dict)  # built input name → module
    # os id → arch → {"state": digest, "archives": {sources line: {"inrelease", "packages"}}}
    archives: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def for_matrix(cls, matrix_path: Path, *, checked: Path | None = None) -> Lock:
        return cls.load(matrix_path.with_name("runtimes.lock.json"), checked=checked)

    @classmethod
    def load(cls, path: Path, *, checked: Path | None = None) -> Lock:
        """Read and validate the lock file (lock.schema.json); a malformed one is a
        ConfigurationError naming the file and the field. ``checked``: a folder (in the
        cache) that remembers which contents passed, so the same file is validated once."""
        try:
            raw_bytes = read_bounded(path, LOCK_MAX_BYTES)
        except FileNotFoundError:
            return cls(path=path)
        except TooLarge as exc:
            raise ConfigurationError(f"{exc}; expected a lock file") from None
        except OSError as exc:
            raise ConfigurationError(f"{path}: cannot read: {exc.strerror}") from None
        try:
            raw: Any = json.loads(raw_bytes.decode("utf-8"))
        except UnicodeDecodeError as exc:
            line = raw_bytes[: exc.start].count(b"\n") + 1
            msg = f"{path}:{line}: not UTF-8 (byte 0x{raw_bytes[exc.start]:02x}); expected JSON"
            raise ConfigurationError(msg) from None
        except json.JSONDecodeError as exc:
            msg = f"{path}:{exc.lineno}: not valid JSON: {exc.msg}"
            raise ConfigurationError(msg) from None
        except ValueError:  # a number of thousands of digits (int's conversion limit)
            raise ConfigurationError(f"{path}: holds a number too long to read") from None
        except RecursionError:
            raise ConfigurationError(f"{path}: nested too deeply to be a lock file") from None
        mark = None if checked is None else _validated_mark(checked, raw_bytes)
        if mark is None or not mark.is_file():
            error = jsonschema.exceptions.best_match(_schema().iter_errors(raw))
            if error is not None:
                raise _schema_message(path, error)
            if mark is not None:
                with contextlib.suppress(OSError):  # a cache that cannot be written: no mark
                    write_atomic(mark, b"")
        lock = cls(path=path)
        for runtime_id, arches in raw.get("pip", {}).items():
            for arch, files in arches.items():
                lock.pip.setdefault(runtime_id, {})[arch] = [
                    LockedFile(filename=f["filename"], sha256=f["sha256"]) for f in files
                ]
        lock.bases = raw.get("bases", {})
        lock.inputs = raw.get("inputs", {})
        for runtime_id, packages in raw.get("npm", {}).items():
            lock.npm[runtime_id] = [
                LockedPackage(path=p["path"], url=p["url"], sha256=p["sha256"]) for p in packages
            ]
        for name, entry in raw.get("go", {}).items():
            lock.go[name] = LockedModule(
                module=entry["module"], version=entry["version"], sum=entry["sum"]
            )
        lock.archives = raw.get("archives", {})
        return lock

    def archive_state(self, os_id: str, arch: str) -> str | None:
        """The digest of an OS's archive state for one arch as ``lock`` last recorded it."""
        state = self.archives.get(os_id, {}).get(arch, {}).get("state")
        return state if isinstance(state, str) else None

    def save(self) -> None:
        data = {
            "version": LOCK_VERSION,
            "bases": {k: dict(sorted(v.items())) for k, v in sorted(self.bases.items())},
            "pip": {
                rt: {
                    arch: [{"filename": f.filename, "sha256": f.sha256} for f in files]
                    for arch, files in sorted(arches.items())
                }
                for rt, arches in sorted(self.pip.items())
            },
            "inputs": {k: dict(sorted(v.items())) for k, v in sorted(self.inputs.items())},
            "npm": {
                rt: [{"path": p.path, "url": p.url, "sha256": p.sha256} for p in packages]
                for rt, packages in sorted(self.npm.items())
            },
            "go": {
                name: {"module": m.module, "version": m.version, "sum": m.sum}
                for name, m in sorted(self.go.items())
            },
            "archives": {k: dict(sorted(v.items())) for k, v in sorted(self.archives.items())},
        }
        write_atomic(self.path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))

    def pip_files(self, runtime_id: str, arch: str) -> list[LockedFile]:
        files = self.pip.get(runtime_id, {}).get(arch)
        if not files:
            msg = (
                f"{runtime_id}/{arch}: its Python packages are unlocked in {self.path.name}; "
                f"run `lambda-images lock {runtime_id}` where PyPI is reachable"
            )
            raise InputError(msg)
        return files

    def base_digest(self, os_id: str, arch: str) -> str:
        digest = self.bases.get(os_id, {}).get(arch)
        if not digest:
            msg = (
                f"{os_id}/{arch}: the base image digest is unlocked in {self.path.name}; "
                f"run `lambda-images lock` where its registry is reachable"
            )
            raise InputError(msg)
        return digest

    def require(self, target: Target) -> None:
        """Raise InputError, naming the entry, when anything ``target`` downloads is unlocked:
        its Python wheels, npm tree, URL inputs and, for a base pulled by digest, that digest.
        Called before a cell's files are touched, so that an unlocked input writes nothing."""
        from .matrix import ImageBase

        runtime, arch = target.runtime, target.arch.name
        if runtime.install.pip:
            self.pip_files(runtime.id, arch)
        if runtime.install.npm:
            self.npm_packages(runtime.id)
        for item in runtime.all_inputs():
            if not item.declared_sha256(arch):
                self.input_sha256(runtime.id, arch, item.name, item.key(arch), item.filename(arch))
        if isinstance(runtime.os.base, ImageBase):  # pulled by its pinned digest
            self.base_digest(runtime.os.id, arch)

    def unlocked(self, target: Target) -> str | None:
        """Why ``target`` cannot be built from this lock (``require``'s message), or None."""
        try:
            self.require(target)
        except InputError as exc:
            return str(exc)
        return None

    def input_sha256(self, runtime_id: str, arch: str, name: str, key: str, filename: str) -> str:
        digest = self.inputs.get(name, {}).get(key)
        if not digest:
            msg = (
                f"{runtime_id}/{arch}: input {name!r} ({filename}) is unlocked in "
                f"{self.path.name}; run `lambda-images lock {runtime_id}` where its URL is "
                "reachable (the scheduled workflow does)"
            )
            raise InputError(msg)
        return digest

    def go_module(self, runtime_id: str, name: str, module: str, version: str) -> LockedModule:
        """The locked module of a built input; unlocked when the lock names another version."""
        locked = self.go.get(name)
        if locked is None or (locked.module, locked.version) != (module, version):
            msg = (
                f"{runtime_id}: input {name!r} ({module}@{version}) is unlocked in "
                f"{self.path.name}; run `lambda-images lock {runtime_id}` where the Go module "
                "proxy is reachable"
            )
            raise InputError(msg)
        return locked

    def npm_packages(self, runtime_id: str) -> list[LockedPackage]:
        packages = self.npm.get(runtime_id)
        if not packages:
            msg = (
                f"{runtime_id}: its npm packages are unlocked in {self.path.name}; "
                f"run `lambda-images lock {runtime_id}` where the npm registry is reachable"
            )
            raise InputError(msg)
        for i, package in enumerate(packages):
            if not package.sha256:
                msg = (
                    f"{runtime_id}: npm package {package.path} (npm.{runtime_id}[{i}]) is "
                    f"unlocked in {self.path.name}: its sha256 is null; run "
                    f"`lambda-images lock {runtime_id}` where the npm registry is reachable"
                )
                raise InputError(msg)
        return packages
