"""The lock file (runtimes.lock.json): every downloaded input pinned by sha256.

Checksums are only ever computed here from the artifact itself (``lambda-images lock``); an
input the lock does not cover is *unlocked*, and building a target that needs it fails with a
message that says so. The file sits next to runtimes.yaml.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigurationError, InputError

LOCK_VERSION = 1
SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
    sha256: str


def _checked_sha256(path: Path, where: str, value: Any) -> str | None:
    """A lock entry's checksum: 64 lowercase hex digits, or null for an unlocked input."""
    if value is None:
        return None
    if not isinstance(value, str) or not SHA256.match(value):
        msg = f"{path}: {where}: {value!r} is not 64 lowercase hex digits (or null when unlocked)"
        raise ConfigurationError(msg)
    return value


@dataclass(kw_only=True)
class Lock:
    path: Path
    pip: dict[str, dict[str, list[LockedFile]]] = field(default_factory=dict)
    bases: dict[str, dict[str, str | None]] = field(default_factory=dict)
    inputs: dict[str, dict[str, str | None]] = field(default_factory=dict)
    npm: dict[str, list[LockedPackage]] = field(default_factory=dict)

    @classmethod
    def for_matrix(cls, matrix_path: Path) -> Lock:
        return cls.load(matrix_path.with_name("runtimes.lock.json"))

    @classmethod
    def load(cls, path: Path) -> Lock:
        if not path.exists():
            return cls(path=path)
        try:
            raw: dict[str, Any] = json.loads(path.read_text("utf-8"))
        except json.JSONDecodeError as exc:
            msg = f"{path}:{exc.lineno}: not valid JSON: {exc.msg}"
            raise ConfigurationError(msg) from None
        lock = cls(path=path)
        for runtime_id, arches in raw.get("pip", {}).items():
            for arch, files in arches.items():
                locked = []
                for i, entry in enumerate(files):
                    if not SHA256.match(str(entry.get("sha256", ""))):
                        msg = (
                            f"{path}: pip.{runtime_id}.{arch}[{i}].sha256: "
                            f"{entry.get('sha256')!r} is not 64 lowercase hex digits"
                        )
                        raise ConfigurationError(msg)
                    locked.append(LockedFile(filename=entry["filename"], sha256=entry["sha256"]))
                lock.pip.setdefault(runtime_id, {})[arch] = locked
        lock.bases = raw.get("bases", {})
        for name, keys in raw.get("inputs", {}).items():
            lock.inputs[name] = {
                key: _checked_sha256(path, f"inputs.{name}.{key}", value)
                for key, value in keys.items()
            }
        for runtime_id, packages in raw.get("npm", {}).items():
            lock.npm[runtime_id] = [
                LockedPackage(
                    path=p["path"],
                    url=p["url"],
                    sha256=_checked_sha256(path, f"npm.{runtime_id}[{i}]", p["sha256"]) or "",
                )
                for i, p in enumerate(packages)
            ]
        return lock

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
        }
        tmp = self.path.with_suffix(".json.part")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8", newline="\n")
        tmp.replace(self.path)

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

    def npm_packages(self, runtime_id: str) -> list[LockedPackage]:
        packages = self.npm.get(runtime_id)
        if not packages:
            msg = (
                f"{runtime_id}: its npm packages are unlocked in {self.path.name}; "
                f"run `lambda-images lock {runtime_id}` where the npm registry is reachable"
            )
            raise InputError(msg)
        return packages
