"""What every stage of one command shares: settings, matrix, lock, work folder, engine.

The engine and the registries are reached (and their client code imported) on first use: a
command that needs neither, such as ``list``, loads neither."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..lock import Lock
from ..matrix import Matrix, Runtime, Target, load_matrix
from ..settings import Settings
from ..workdir import Cell, WorkDir

if TYPE_CHECKING:
    from ..base import BaseRecord
    from ..oci.registry import Registry, RegistryRef


@dataclass(kw_only=True)
class Run:
    """One command's context; commands that need no engine never connect to one."""

    settings: Settings
    matrix: Matrix
    work: WorkDir
    _lock: Lock | None = None
    _client: Any = None
    # How a registry is reached (tests give their own credentials and retry policy).
    connect_registry: Callable[[RegistryRef], Registry] | None = None
    # The OS bases located this run, by (os id, arch): a cell's build loads the very base its
    # input digest names, and a second cell on the same base does not locate it again.
    bases: dict[tuple[str, str], BaseRecord] = field(default_factory=dict)

    @classmethod
    def open(cls, settings: Settings, *, lock: bool = True) -> Run:
        """The command's run; ``lock``: read (and check) the lock file now, so that a malformed
        one is reported before anything else is done, else on first use."""
        matrix = load_matrix(settings.matrix, namespace=settings.namespace)
        checked = settings.cache / "checked"
        read = Lock.for_matrix(matrix.path, checked=checked) if lock else None
        return cls(settings=settings, matrix=matrix, work=WorkDir(settings.work), _lock=read)

    @property
    def lock(self) -> Lock:
        """The matrix's lock file (commands that need none, such as ``list``, never read it:
        validating it is most of what they would cost)."""
        if self._lock is None:
            self._lock = Lock.for_matrix(self.matrix.path, checked=self.settings.cache / "checked")
        return self._lock

    @property
    def client(self) -> Any:
        """The Docker Engine, connected on first use (commands that need none never ask)."""
        if self._client is None:
            from ..engine import connect

            self._client = connect(self.settings.docker_host)
        return self._client

    def registry(self, ref: RegistryRef, *, mirror_of: RegistryRef | None = None) -> Registry:
        """A client of ``ref``'s registry, with the credentials that belong to its host
        (oci/credentials.py). The environment's pair was given for the command's --registry:
        a mirror (``mirror_of`` that registry) gets it only when it is on the same host."""
        if self.connect_registry is not None:
            return self.connect_registry(ref)
        from ..oci.credentials import resolve_credentials
        from ..oci.registry import Registry

        given_for = (mirror_of or ref).host
        credentials = resolve_credentials(ref.host, self.settings, environment_host=given_for)
        return Registry(ref.host, scheme=ref.scheme, credentials=credentials)

    @property
    def inputs_cache(self) -> Path:
        return self.settings.cache / "inputs"

    @property
    def layer_cache(self) -> Path:
        """Compressed layers by diff ID, for every work directory (snapshot.compress_layer)."""
        return self.settings.cache / "layers"

    def select(self, ids: Sequence[str], *, include_deprecated: bool = False) -> list[Runtime]:
        """Runtime identifiers as the command line gives them → runtimes of the matrix (the one
        place they are resolved; matrix.Matrix.select says what is refused)."""
        return self.matrix.select(
            ids, include_deprecated=include_deprecated, today=self.settings.today
        )

    def cell(self, target: Target) -> Cell:
        return self.work.cell(target.runtime.id, target.arch.name)
