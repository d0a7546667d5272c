"""The tags of a release, in the order they are written.

Dated tags first (``<tag>.<YYYY.MM.DD.HH>-<arch>``, ``<tag>.<YYYY.MM.DD.HH>``), then the moving
ones: ``<tag>-<arch>``, ``<tag>``, and ``latest-<arch>``, ``latest`` when runtimes.yaml declares
the runtime its family's latest. The date is the release time (``Settings.release``), not
SOURCE_DATE_EPOCH. A dated tag is immutable: one that already names another digest refuses the
runtime before anything moves. Content the runtime's own tags already name is no new release: it
keeps the dated tags of the release that first published it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from ..errors import PublishError
from ..matrix import Runtime
from ..oci.registry import Registry
from .documents import Document


def dated_stamp(release: int) -> str:
    """``YYYY.MM.DD.HH`` (UTC) of a release time, as AWS dates its tags."""
    return dt.datetime.fromtimestamp(release, dt.UTC).strftime("%Y.%m.%d.%H")


def dated_tags(runtime: Runtime, stamp: str) -> dict[str, str | None]:
    """The release's own tags, tag → arch (None: the index): never moved once written."""
    tags: dict[str, str | None] = {f"{runtime.tag}.{stamp}-{a}": a for a in runtime.architectures}
    tags[f"{runtime.tag}.{stamp}"] = None
    return tags


def moving_tags(runtime: Runtime, *, latest: bool) -> dict[str, str | None]:
    """The tags each release moves: ``<tag>-<arch>``, ``<tag>``, and the ``latest`` ones."""
    tags: dict[str, str | None] = {runtime.arch_tag(a): a for a in runtime.architectures}
    tags[runtime.tag] = None
    if latest:
        tags.update({f"latest-{a}": a for a in runtime.architectures})
        tags["latest"] = None
    return tags


def runtime_tags(runtime: Runtime, release: int, *, latest: bool) -> dict[str, str | None]:
    """Tag → arch it names (None: the index), in the order they are written: dated first, so
    that a release whose moving tags are in place always has its dated tags too."""
    return {
        **dated_tags(runtime, dated_stamp(release)),
        **moving_tags(runtime, latest=latest),
    }


def release_stamps(runtime: Runtime, tags: Sequence[str]) -> list[str]:
    """The stamps of the runtime's dated index tags among ``tags``, newest first."""
    pattern = re.compile(re.escape(runtime.tag) + r"\.([0-9]{4}\.[0-9]{2}\.[0-9]{2}\.[0-9]{2})")
    return sorted({m[1] for t in tags if (m := pattern.fullmatch(t))}, reverse=True)


def check_dated(
    runtime: Runtime, where: str, wanted: dict[str, Document], current: dict[str, str | None]
) -> None:
    """Refuse (PublishError) when a dated tag we would write already names another digest."""
    for tag, doc in wanted.items():
        if tag.startswith(f"{runtime.tag}.") and current[tag] not in (None, doc.digest):
            msg = (
                f"{where}:{tag} already names {current[tag]}, not this release's {doc.digest}: "
                "a dated tag is never moved, so nothing of this runtime was published; publish "
                "it under a later release time (LAMBDA_IMAGES_RELEASE_TIME, in another hour)"
            )
            raise PublishError(msg)


def earlier_release(runtime: Runtime, registry: Registry, repo: str, index: Document) -> str | None:
    """The stamp of the newest dated index tag that already names ``index``, if any."""
    for stamp in release_stamps(runtime, registry.list_tags(repo)):
        if registry.manifest_digest(repo, f"{runtime.tag}.{stamp}") == index.digest:
            return stamp
    return None
