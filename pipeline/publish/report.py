"""What a publish did, as data: per runtime on the primary registry and on each mirror."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import PublishError


@dataclass(kw_only=True)
class MirrorReport:
    """One runtime on one mirror: ``published``, ``unchanged`` or ``behind`` (with a reason)."""

    status: str = "behind"
    reason: str | None = None
    tags_moved: list[str] = field(default_factory=list)
    blobs_uploaded: int = 0


@dataclass(kw_only=True)
class RuntimeReport:
    runtime: str
    repository: str
    status: str = "failed"  # published | unchanged | failed
    reason: str | None = None
    release: str | None = None  # YYYY.MM.DD.HH of the release the tags name
    index: str | None = None
    manifests: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    tags_moved: list[str] = field(default_factory=list)
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    blobs_mounted: int = 0
    bytes_mounted: int = 0  # bytes a cross-repository mount saved uploading
    branch: dict[str, Any] | None = None
    mirrors: dict[str, MirrorReport] = field(default_factory=dict)
    sboms: dict[str, str] = field(default_factory=dict)  # arch → digest of its SBOM artifact
    # arch → what changed since the previous release (see sbom.Changes.as_json)
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class PublishReport:
    registry: str
    git_remote: str | None
    mirrors: list[str] = field(default_factory=list)
    runtimes: list[RuntimeReport] = field(default_factory=list)
    error: str | None = None  # what stopped the publish outside any one runtime, if anything

    @property
    def ok(self) -> bool:
        """Every runtime published or unchanged on the primary registry (mirrors aside)."""
        return self.error is None and all(r.status != "failed" for r in self.runtimes)

    @property
    def mirrors_behind(self) -> dict[str, dict[str, str | None]]:
        """Mirror → {runtime: reason} for each runtime a mirror lacks."""
        behind: dict[str, dict[str, str | None]] = {}
        for r in self.runtimes:
            for mirror, m in r.mirrors.items():
                if m.status == "behind":
                    behind.setdefault(mirror, {})[r.runtime] = m.reason
        return behind

    def raise_for_failure(self) -> None:
        """PublishError naming the runtimes that failed on the primary registry."""
        failed = [r.runtime for r in self.runtimes if r.status == "failed"]
        if failed:
            names = ", ".join(failed)
            raise PublishError(f"not published: {names} (reasons above and in --report)")

    def as_json(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "git_remote": self.git_remote,
            "mirrors": self.mirrors,
            "ok": self.ok,
            "error": self.error,
            "published": [r.runtime for r in self.runtimes if r.status == "published"],
            "unchanged": [r.runtime for r in self.runtimes if r.status == "unchanged"],
            "failed": {r.runtime: r.reason for r in self.runtimes if r.status == "failed"},
            "mirrors_behind": self.mirrors_behind,
            "bytes_uploaded": sum(r.bytes_uploaded for r in self.runtimes),
            "bytes_mounted": sum(r.bytes_mounted for r in self.runtimes),
            "runtimes": [dataclasses.asdict(r) for r in self.runtimes],
        }
