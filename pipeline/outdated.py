"""Outdated: which installed packages of Debian images have a newer version in their archives.

The images are either the ones built into the engine (the dpkg database is read out of a
created, never started, container) or the ones published to a registry: there the per-arch
tag's manifest is read and its layers are searched from the top down; the top-most layer that
holds ``var/lib/dpkg/status`` is the one the image sees (a whiteout of it hides the lower ones;
oci/tree.py says what a whiteout deletes).
Every installed package is then compared, the way
Debian compares versions, with the newest version its OS's archives offer now (the suite,
``-updates``, ``-security`` and any extra archives; apt.py). A package with a newer version
means the image should be rebuilt: the next build picks the new version up by itself, since the
archives' state is part of the base's identity.

Amazon Linux cells are not checked: their repository metadata is not reachable here.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import docker.errors

from . import apt, log
from .errors import EngineError, OutdatedError, RegistryError
from .matrix import RootfsBase, Target
from .oci import tree
from .oci.registry import Registry, RegistryRef

State = Literal["outdated", "current", "not built", "not published", "not checked"]
DPKG_STATUS = "/var/lib/dpkg/status"
_STATUS_MEMBER = DPKG_STATUS.lstrip("/")
# A published layer is read only this far: its dpkg status (a few MB in any real image), its
# entries and their bytes (Lambda's limit for a whole image, uncompressed).
MAX_STATUS = 64 * 1024 * 1024
MAX_ENTRIES = 1_000_000
MAX_CONTENT = 10 * 1024**3


@dataclass(kw_only=True)
class ImageReport:
    runtime: str
    arch: str
    image: str
    state: State
    upgrades: list[apt.Upgrade] = field(default_factory=list)
    note: str = ""
    digest: str = ""  # of the published manifest that was read (published images only)

    def as_json(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "arch": self.arch,
            "image": self.image,
            "digest": self.digest or None,
            "state": self.state,
            "upgrades": [asdict(u) for u in self.upgrades],
            "note": self.note,
        }


@dataclass(kw_only=True)
class OutdatedReport:
    images: list[ImageReport] = field(default_factory=list)

    @property
    def outdated(self) -> list[ImageReport]:
        return [i for i in self.images if i.state == "outdated"]

    def as_json(self) -> list[dict[str, Any]]:
        return [i.as_json() for i in self.images]

    def raise_for_failure(self) -> None:
        """OutdatedError naming the images with a package behind their archives."""
        if self.outdated:
            names = ", ".join(f"{i.runtime}/{i.arch}" for i in self.outdated)
            raise OutdatedError(f"newer packages in the archives for {names}; rebuild them")


def read_dpkg_status(client: Any, image: str) -> str:
    """The dpkg status file of an image, read from a created (never started) container."""
    try:
        container = client.containers.create(image, entrypoint=["/bin/true"], command=[])
    except docker.errors.APIError as exc:
        raise EngineError(f"{image}: cannot create a container: {exc.explanation}") from None
    try:
        stream, _ = container.get_archive(DPKG_STATUS)
        data = b"".join(stream)
    except docker.errors.NotFound:
        return ""
    finally:
        container.remove(force=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.next()
        extracted = tar.extractfile(member) if member is not None else None
        return extracted.read().decode("utf-8", "replace") if extracted else ""


class _Newest:
    """The newest versions each OS's archives offer, read once per OS and architecture."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.known: dict[tuple[str, str], dict[str, apt.Available]] = {}

    def __call__(self, target: Target, base: RootfsBase) -> dict[str, apt.Available]:
        key = (target.runtime.os.id, target.arch.debian)
        if key not in self.known:
            with log.step(f"archives of {target.runtime.os.id}/{target.arch.name}"):
                self.known[key] = apt.newest_versions(
                    apt.archives(base), target.arch.debian, self.cache
                )
        return self.known[key]


def _compare(entry: ImageReport, status: str, newest: dict[str, apt.Available]) -> None:
    installed = apt.installed_from_status(status)
    if not installed:
        entry.state = "not checked"
        entry.note = f"{entry.image} has no dpkg database"
        return
    entry.upgrades = apt.upgrades(installed, newest)
    entry.state = "outdated" if entry.upgrades else "current"


def _not_debian(entry: ImageReport, target: Target) -> bool:
    if isinstance(target.runtime.os.base, RootfsBase):
        return False
    entry.state = "not checked"
    entry.note = f"{target.runtime.os.name}: its repository metadata is not read here"
    return True


def check_targets(client: Any, targets: Sequence[Target], cache: Path) -> OutdatedReport:
    """Compare each target's built image with the newest versions in its OS's archives."""
    report = OutdatedReport()
    newest = _Newest(cache)
    for target in targets:
        entry = ImageReport(
            runtime=target.runtime.id,
            arch=target.arch.name,
            image=target.image_tag,
            state="current",
        )
        report.images.append(entry)
        base = target.runtime.os.base
        if not isinstance(base, RootfsBase):
            _not_debian(entry, target)
            continue
        try:
            client.images.get(target.image_tag)
        except docker.errors.ImageNotFound:
            entry.state = "not built"
            entry.note = f"no image {target.image_tag} in the engine"
            continue
        _compare(entry, read_dpkg_status(client, target.image_tag), newest(target, base))
    return report


# --- published images ----------------------------------------------------------------------


def _arch_manifest(
    registry: Registry, repo: str, tag: str, target: Target
) -> tuple[str, dict[str, Any]]:
    """The digest and body of the manifest ``tag`` names for the target's architecture (an
    index is followed to that architecture's manifest), each checked against its digest."""
    return registry.image_manifest(repo, tag, target.arch.docker)


def _status_in_layer(path: Path) -> str | None:
    """The dpkg status file a layer holds: its text, "" when the layer hides the lower layers'
    one (a whiteout) without holding one of its own, None when the layer leaves it alone."""

    def look(name: str, member: tarfile.TarInfo, content: IO[bytes]) -> bytes | None:
        if name != _STATUS_MEMBER:
            return None
        if member.size > MAX_STATUS:
            msg = f"its dpkg status is {log.human_size(member.size)}; refused"
            raise RegistryError(f"a layer of the published image: {msg}")
        return content.read()

    try:
        with path.open("rb") as stream:
            layer = tree.read_layer(stream, look, max_entries=MAX_ENTRIES, max_bytes=MAX_CONTENT)
    except tree.LayerTooLarge:
        msg = "a layer of the published image is larger than an image can be"
        raise RegistryError(msg) from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        msg = f"a layer of the published image cannot be read as a tar ({exc})"
        raise RegistryError(msg) from None
    for entry in layer.entries:
        if entry.path == _STATUS_MEMBER and entry.kind == "file":
            return (entry.seen or b"").decode("utf-8", "replace")
    return "" if any(gone.hides(_STATUS_MEMBER) for gone in layer.whiteouts) else None


def read_published_status(registry: Registry, repo: str, manifest: dict[str, Any]) -> str:
    """The dpkg status of a published image: from the top-most layer that holds it."""
    layers = [(str(layer["digest"]), int(layer["size"])) for layer in manifest.get("layers", [])]
    with tempfile.TemporaryDirectory(prefix="lambda-outdated-") as tmp:
        for digest, size in reversed(layers):
            path = Path(tmp, "layer")  # never a name from the registry
            registry.fetch_blob(repo, digest, path, size)
            status = _status_in_layer(path)
            path.unlink()
            if status is not None:
                return status
    return ""


def check_published(
    registry: Registry, ref: RegistryRef, targets: Sequence[Target], cache: Path
) -> OutdatedReport:
    """Compare each target's published image (``<tag>-<arch>`` in ``ref``) with the newest
    versions in its OS's archives."""
    report = OutdatedReport()
    newest = _Newest(cache)
    for target in targets:
        repo = ref.repository(target.runtime.family.id)
        tag = target.published_tag
        entry = ImageReport(
            runtime=target.runtime.id, arch=target.arch.name, image=f"{ref.host}/{repo}:{tag}",
            state="current",
        )  # fmt: skip
        report.images.append(entry)
        base = target.runtime.os.base
        if not isinstance(base, RootfsBase):
            _not_debian(entry, target)
            continue
        if registry.manifest_digest(repo, tag) is None:
            entry.state = "not published"
            entry.note = f"no tag {tag} in {ref.host}/{repo}"
            continue
        with log.step(f"dpkg status of {entry.image}"):
            entry.digest, manifest = _arch_manifest(registry, repo, tag, target)
            status = read_published_status(registry, repo, manifest)
        _compare(entry, status, newest(target, base))
    return report
