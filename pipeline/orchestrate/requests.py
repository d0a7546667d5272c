"""What a command asks the conductor for: every value resolved once, at the command line, into a
frozen request (runtimes from the matrix, a checked registry reference and git remote, a report
path whose folder exists). Nothing downstream parses them again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: a request is made before any stage's code is imported
    from ..matrix import Runtime
    from ..oci.registry import RegistryRef


@dataclass(frozen=True, kw_only=True)
class Cells:
    """Runtimes and the architectures to work on (none: each runtime's own)."""

    runtimes: tuple[Runtime, ...]
    arches: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    cells: Cells
    force: bool = False  # redo a cell whose inputs did not change
    no_cache: bool = False  # rerun every build step; implies force
    out: Path | None = None  # also snapshot each cell and copy it here
    published: str | None = None  # a checked git remote: skip cells its branches record
    published_registry: RegistryRef | None = None  # ... and only when the registry agrees


@dataclass(frozen=True, kw_only=True)
class PublishRequest:
    runtimes: tuple[Runtime, ...]
    registry: RegistryRef
    mirrors: tuple[RegistryRef, ...] = ()
    remote: str | None = None  # a checked git remote
    report: Path | None = None  # a checked report path


@dataclass(frozen=True, kw_only=True)
class RebuildRequest:
    runtime: Runtime
    arches: tuple[str, ...] = ()
    force: bool = False
    no_cache: bool = False
    remote: str | None = None
    registry: RegistryRef | None = None  # publish there (and push the branch with it)


@dataclass(frozen=True, kw_only=True)
class OutdatedRequest:
    cells: Cells
    registry: RegistryRef | None = None  # the published images instead of the built ones
    only: str | None = None  # "images" (their packages against their archives), "inputs"

    @property
    def images(self) -> bool:
        return self.only != "inputs"

    @property
    def inputs(self) -> bool:
        """The pinned inputs against their registries (the network)."""
        return self.only != "images"


@dataclass(frozen=True, kw_only=True)
class UpgradeRequest:
    runtimes: tuple[Runtime, ...]  # whose pins move
    names: tuple[str, ...] = ()  # the pins to move (a package, an input, a module); none: all
    markdown: Path | None = None  # a checked path: what moved, as a pull request's body


@dataclass(frozen=True, kw_only=True)
class RefreshRequest:
    runtimes: tuple[Runtime, ...]
    registry: RegistryRef
    mirrors: tuple[RegistryRef, ...] = ()
    remote: str | None = None
    report: Path | None = None
