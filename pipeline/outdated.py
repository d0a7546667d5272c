"""Outdated: which installed packages of built Debian images have a newer version in their archives.

For each Debian cell whose image is in the engine, the dpkg database is read out of the image
(``/var/lib/dpkg/status``, without running it) and every installed package is compared, the way
Debian compares versions, with the newest version its OS's archives offer now (the suite,
``-updates``, ``-security`` and any extra archives; apt.py). A package with a newer version
means the image should be rebuilt: the next build picks the new version up by itself, since the
archives' state is part of the base's identity.

Amazon Linux cells are not checked: their repository metadata is not reachable here.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import docker.errors

from . import apt, log
from .errors import EngineError
from .matrix import RootfsBase, Target

State = Literal["outdated", "current", "not built", "not checked"]
DPKG_STATUS = "/var/lib/dpkg/status"


@dataclass(kw_only=True)
class ImageReport:
    runtime: str
    arch: str
    image: str
    state: State
    upgrades: list[apt.Upgrade] = field(default_factory=list)
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "arch": self.arch,
            "image": self.image,
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

    def lines(self) -> list[str]:
        """One line per image, then one per package with a newer version."""
        out = []
        for image in self.images:
            count = f": {len(image.upgrades)} package(s) with a newer version"
            detail = count if image.upgrades else (f": {image.note}" if image.note else "")
            out.append(f"{image.runtime}/{image.arch}\t{image.state}{detail}")
            out += [
                f"  {u.package}\t{u.installed} → {u.available}\t({u.suite})" for u in image.upgrades
            ]
        return out


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


def check_targets(client: Any, targets: Sequence[Target], cache: Path) -> OutdatedReport:
    """Compare each target's built image with the newest versions in its OS's archives."""
    report = OutdatedReport()
    newest: dict[tuple[str, str], dict[str, apt.Available]] = {}
    for target in targets:
        base = target.runtime.os.base
        entry = ImageReport(
            runtime=target.runtime.id,
            arch=target.arch.name,
            image=target.image_tag,
            state="current",
        )
        report.images.append(entry)
        if not isinstance(base, RootfsBase):
            entry.state = "not checked"
            entry.note = f"{target.runtime.os.name}: its repository metadata is not read here"
            continue
        try:
            client.images.get(target.image_tag)
        except docker.errors.ImageNotFound:
            entry.state = "not built"
            entry.note = f"no image {target.image_tag} in the engine"
            continue
        key = (target.runtime.os.id, target.arch.debian)
        if key not in newest:
            with log.step(f"archives of {target.runtime.os.id}/{target.arch.name}"):
                newest[key] = apt.newest_versions(apt.archives(base), target.arch.debian, cache)
        installed = apt.installed_from_status(read_dpkg_status(client, target.image_tag))
        if not installed:
            entry.state = "not checked"
            entry.note = f"{target.image_tag} has no dpkg database"
            continue
        entry.upgrades = apt.upgrades(installed, newest[key])
        entry.state = "outdated" if entry.upgrades else "current"
    return report
