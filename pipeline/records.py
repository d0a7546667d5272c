"""The records a cell hands from one stage to the next, kept in its folder as JSON (workdir.py).

One module, below every stage, so that a stage reads what an earlier one wrote without importing
it, and every record is read the same way::

    inputs.json     CellInputs / InputsRecord   what the image is made from, and its state
    build.json      BuildRecord                 the image built
    test.json       Report (of Checks)          the conformance report
    snapshot.json   ArchSnapshot (of Layers)    the layers and config of the snapshot

Every record is a frozen dataclass with ``to_json`` and ``from_json``; ``from_json`` checks each
field's type and raises ValueError (or KeyError, TypeError) on a malformed record, and reading a
record from a cell also checks that it is that cell's (runtime and architecture). ``read`` treats
an unreadable record as missing (one warning line; the stage that writes it runs again),
``read_strict`` raises UnreadableRecord for a stage that cannot redo it. Writes are atomic
(workdir.write_json).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, Self

from .workdir import BUILD, INPUTS, SNAPSHOT, TEST, Cell

State = Literal["built", "unchanged"]
_DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}")
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_RUNTIME_ID: Final = re.compile(r"[a-z][a-z0-9]*(\.[a-z0-9]+)*")
_ARCHES: Final = ("x86_64", "arm64")
_DOCKER_ARCHES: Final = {"x86_64": "amd64", "arm64": "arm64"}
# C0 and C1 controls and the Unicode line separators: text that would end a Dockerfile line.
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_JSON_TYPES: Final[dict[str, type | tuple[type, ...]]] = {
    "str": str,
    "int": int,
    "float": (int, float),
    "bool": bool,
    "dict[str, Any]": dict,
    "dict[str, str]": dict,
    "list[str]": list,
    "list[str] | None": (list, type(None)),
    "list[Layer]": list,
    "tuple[Check, ...]": list,
    "ImageConfig": dict,
}


def _object(raw: Any, cls: type) -> dict[str, Any]:
    """``raw`` as the fields of ``cls``: every field present with its JSON type, no other key
    (but ``extra``, computed fields a record writes for its readers)."""
    if not isinstance(raw, dict):
        raise TypeError(f"{cls.__name__} is not an object")
    values = {}
    for f in fields(cls):
        if f.name not in raw:
            raise ValueError(f"{cls.__name__} has no {f.name!r}")
        kind = _JSON_TYPES.get(str(f.type))
        if kind is not None and (
            not isinstance(raw[f.name], kind) or isinstance(raw[f.name], bool) != (kind is bool)
        ):
            raise ValueError(f"{cls.__name__}.{f.name} is not of type {f.type}")
        values[f.name] = raw[f.name]
    return values


def _runtime_and_arch(runtime: str, arch: str) -> None:
    if len(runtime) > 64 or not _RUNTIME_ID.fullmatch(runtime):
        raise ValueError(f"runtime {runtime!r} is not a runtime identifier")
    if arch not in _ARCHES:
        raise ValueError(f"arch {arch!r} is not an architecture")


class CellRecord:
    """What every record shares: its file name, the cell it belongs to, reading and writing."""

    FILE: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_json(cls, raw: Any) -> Self:
        raise NotImplementedError

    def owner(self) -> tuple[str, str]:
        """(runtime, arch) of the cell the record describes."""
        raise NotImplementedError

    def write(self, cell: Cell) -> Path:
        return cell.write(self.FILE, self.to_json())

    @classmethod
    def _of_cell(cls, raw: Any, cell: Cell) -> Self:
        record = cls.from_json(raw)
        runtime, arch = record.owner()
        if (runtime, arch) != (cell.runtime, cell.arch):
            raise ValueError(f"the record is of {runtime}/{arch}")
        return record

    @classmethod
    def read(cls, cell: Cell) -> Self | None:
        """The cell's record; None when there is none or it cannot be read (one warning)."""
        return cell.read(cls.FILE, lambda raw: cls._of_cell(raw, cell))

    @classmethod
    def read_strict(cls, cell: Cell) -> Self | None:
        """The cell's record; None when there is none, UnreadableRecord when it is malformed."""
        return cell.read_strict(cls.FILE, lambda raw: cls._of_cell(raw, cell))


# --- inputs.json ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CellInputs:
    """What a cell's image is made from, and the digest over it."""

    runtime: str
    arch: str
    digest: str
    parts: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class InputsRecord(CellInputs, CellRecord):
    """``inputs.json``: a cell's inputs and what became of it in this run."""

    FILE: ClassVar[str] = INPUTS
    state: State

    def owner(self) -> tuple[str, str]:
        return self.runtime, self.arch

    @classmethod
    def from_json(cls, raw: Any) -> InputsRecord:
        record = cls(**_object(raw, cls))
        _runtime_and_arch(record.runtime, record.arch)
        if record.state not in ("built", "unchanged"):
            raise ValueError(f"state {record.state!r} is neither built nor unchanged")
        if not _DIGEST.fullmatch(record.digest):
            raise ValueError(f"digest {record.digest!r} is not sha256:<64 hex digits>")
        return record

    @classmethod
    def of(cls, inputs: CellInputs, state: State) -> InputsRecord:
        return cls(**asdict(inputs), state=state)


# --- build.json -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BuildRecord(CellRecord):
    FILE: ClassVar[str] = BUILD
    runtime: str
    arch: str
    image: str  # local tag
    image_id: str
    architecture: str  # as the engine reports it
    size: int  # uncompressed bytes
    base_image_id: str
    context_digest: str
    seconds: float
    log_tail: list[str]

    def owner(self) -> tuple[str, str]:
        return self.runtime, self.arch

    @classmethod
    def from_json(cls, raw: Any) -> BuildRecord:
        record = cls(**_object(raw, cls))
        _runtime_and_arch(record.runtime, record.arch)
        return record


# --- test.json ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Check:
    name: str
    ok: bool
    message: str


@dataclass(frozen=True, kw_only=True)
class Report(CellRecord):
    """The conformance report of one image: each check, in the order they ran. ``image_id``
    and ``checks_digest`` (conformance.checks_digest: the set of checks that ran) say what it
    holds for: a report of another image, or made by other checks, is no report of this one.
    A report written before they were recorded has them empty."""

    FILE: ClassVar[str] = TEST
    image: str
    arch: str
    checks: tuple[Check, ...]
    seconds: float
    image_id: str = ""
    checks_digest: str = ""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def owner(self) -> tuple[str, str]:
        # The image is tagged <namespace>/<runtime>:<arch> (matrix.Target.image_tag).
        return self.image.rpartition("/")[2].partition(":")[0], self.arch

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    @classmethod
    def from_json(cls, raw: Any) -> Report:
        if not isinstance(raw, dict):
            raise TypeError("Report is not an object")
        # An older report has no image_id or checks_digest: empty, it holds for no image.
        raw = {"image_id": "", "checks_digest": "", **raw}
        values = _object({k: v for k, v in raw.items() if k != "ok"}, cls)
        values["checks"] = tuple(Check(**_object(c, Check)) for c in values["checks"])
        values["seconds"] = float(values["seconds"])
        report = cls(**values)
        if report.arch not in _ARCHES:
            raise ValueError(f"arch {report.arch!r} is not an architecture")
        return report

    def summary(self) -> str:
        failed = "; ".join(f"{c.name}: {c.message}" for c in self.failed)
        return f"{self.image} fails {len(self.failed)} conformance check(s): {failed}"


# --- snapshot.json --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Layer:
    file: str  # <sha256 of the .tar.xz>.tar.xz
    sha256: str  # of the compressed file
    diff_id: str  # sha256:… of the uncompressed, normalized tar
    size: int  # uncompressed bytes
    compressed_size: int


def _text(value: Any, what: str) -> str:
    """``value`` when it is one line of text; ValueError naming ``what`` otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string")
    found = _CONTROL.search(value)
    if found:
        raise ValueError(f"{what} holds the control character U+{ord(found.group()):04X}")
    return value


def _texts(value: Any, what: str) -> None:
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    for index, item in enumerate(value):
        _text(item, f"{what}[{index}]")


@dataclass(frozen=True, kw_only=True)
class ImageConfig:
    """The parts of an image's config a snapshot keeps. Each value reaches a line of the branch
    Dockerfile, so every one is checked however the config was made (from the engine, or read
    back from snapshot.json): the types below, and one line of text each (no control
    character)."""

    env: list[str]
    entrypoint: list[str] | None
    cmd: list[str] | None
    working_dir: str
    user: str
    labels: dict[str, str]

    def __post_init__(self) -> None:
        _texts(self.env, "config.env")
        for name in ("entrypoint", "cmd"):
            value = getattr(self, name)
            if value is not None:
                _texts(value, f"config.{name}")
        _text(self.working_dir, "config.working_dir")
        _text(self.user, "config.user")
        if not isinstance(self.labels, dict):
            raise ValueError("config.labels is not an object")
        for key, value in self.labels.items():
            _text(key, "a key of config.labels")
            _text(value, f"config.labels[{key!r}]")

    @classmethod
    def from_json(cls, raw: Any) -> ImageConfig:
        return cls(**_object(raw, cls))

    @classmethod
    def from_docker(cls, config: dict[str, Any]) -> ImageConfig:
        """The config ``docker save`` wrote; ValueError when a value cannot be kept."""
        c = config.get("config") or {}
        labels = c.get("Labels") or {}
        if not isinstance(labels, dict):
            raise ValueError("config.labels is not an object")
        return cls(
            env=c.get("Env") or [],
            entrypoint=c.get("Entrypoint"),
            cmd=c.get("Cmd"),
            working_dir=c.get("WorkingDir") or "",
            user=c.get("User") or "",
            labels=dict(sorted(labels.items())),
        )


@dataclass(frozen=True, kw_only=True)
class ArchSnapshot(CellRecord):
    FILE: ClassVar[str] = SNAPSHOT
    runtime: str
    arch: str
    docker_arch: str
    image_id: str
    layers: list[Layer]
    config: ImageConfig

    def owner(self) -> tuple[str, str]:
        return self.runtime, self.arch

    @classmethod
    def from_json(cls, raw: Any) -> ArchSnapshot:
        """Layer file names become paths: each must be ``<its sha256>.tar.xz`` and nothing else."""
        values = _object(raw, cls)
        layers = [Layer(**_object(layer, Layer)) for layer in values["layers"]]
        for layer in layers:
            if not (_SHA256.fullmatch(layer.sha256) and layer.file == f"{layer.sha256}.tar.xz"):
                raise ValueError(f"layer file {layer.file!r} is not <its sha256>.tar.xz")
        config = ImageConfig.from_json(values["config"])
        snap = cls(**{**values, "layers": layers, "config": config})
        _runtime_and_arch(snap.runtime, snap.arch)
        if snap.docker_arch != _DOCKER_ARCHES[snap.arch]:
            raise ValueError(f"docker_arch {snap.docker_arch!r} is not {snap.arch}'s")
        if not _DIGEST.fullmatch(snap.image_id):
            raise ValueError(f"image_id {snap.image_id!r} is not sha256:<64 hex digits>")
        return snap

    def missing_layers(self, cell: Cell) -> list[str]:
        """The layer files this snapshot names that are not in the cell."""
        return [layer.file for layer in self.layers if not (cell.layers / layer.file).is_file()]

    def is_current(self, cell: Cell, image_id: str) -> bool:
        """True when this snapshot is of ``image_id`` and every layer file is in the cell."""
        return self.image_id == image_id and not self.missing_layers(cell)
