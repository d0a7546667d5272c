"""Releases: publishing runtimes from the work folder, their mirrors and their branches.

Per runtime, only when every architecture it declares has a snapshot (and no ``test.json`` whose
``ok`` is not true), in this order — nothing says "published" before the registry holds the
release, and the branch moves last:

1. the branch head is read (the lease of the branch's push), the documents are made
   (publish/documents.py), the tags decided (publish/tags.py: a dated tag never moves, so one
   that names other content refuses the runtime before anything is sent) and what changed since
   the previous release is read (publish/notes.py);
2. layer and config blobs (HEAD first; only missing ones are uploaded), then the per-architecture
   manifests and the index, by digest: nothing visible moves yet;
3. each architecture's SBOM, attached to its manifest (OCI referrers);
4. the branch head is read again: a branch that moved since step 1 (another publisher) stops the
   runtime here, before any tag moves;
5. the tags, dated first (publish/tags.py);
6. the branch: one orphan commit carrying the snapshot, the SBOMs and, in its README and commit
   message, what changed since the previous release, pushed with ``--force-with-lease`` against
   the head of step 1. A run killed before this step leaves the branch at the previous release,
   and the next run completes it.

Each runtime is published holding its lock and its cells' (workdir.py): a build, snapshot or
branch layout of it in another process waits until it is done. A failing runtime is reported
and the next one goes on. When every runtime is on the primary,
the same blobs, manifests, SBOMs and tags go to each mirror; a mirror that fails is reported as
behind and blocks neither the primary nor the other mirrors. The report (``--report``) is
written even when publishing stops early.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import log
from ..branch import (
    BranchResult,
    check_lease,
    commit_message,
    content_digest,
    push_branch,
    remote_head,
)
from ..epoch import iso8601
from ..errors import PublishError, SnapshotError, failure_reason
from ..matrix import Runtime
from ..oci import referrers
from ..oci.registry import Registry, RegistryRef
from ..publish.documents import (
    ArchImage,
    Document,
    prepare_images,
    read_cells,
    sbom_artifacts,
    with_labels,
)
from ..publish.notes import changelog, history_markdown, release_changes
from ..publish.push import attach_sboms, move_tags, push_images
from ..publish.report import MirrorReport, PublishReport, RuntimeReport
from ..publish.tags import check_dated, dated_stamp, dated_tags, earlier_release, moving_tags
from ..sbom import go_pins
from ..snapshot import cell_sbom, require_snapshot
from ..workdir import read_json, write_json
from .cells import CellResult, branch_content, locked_targets, run_cell
from .requests import PublishRequest, RebuildRequest
from .run import Run


@dataclass(frozen=True, kw_only=True)
class Release:
    """What a runtime's publish put on the primary registry, for its mirrors."""

    runtime: Runtime
    images: list[ArchImage]
    index: Document
    tags: dict[str, Document]
    sboms: list[referrers.Artifact] = field(default_factory=list)


def _publish_runtime(
    run: Run, runtime: Runtime, registry: Registry, request: PublishRequest, report: RuntimeReport
) -> Release:
    """Publish one runtime in the order the module says, recording progress in ``report`` as
    it goes (so that a failure midway still shows what moved)."""
    settings, remote = run.settings, request.remote
    repo = request.registry.repository(runtime.family.id)
    lease = remote_head(remote, runtime.id, settings.environ) if remote else None
    snaps = [with_labels(s, settings.labels) for s in read_cells(runtime, run.work)]
    with log.step(f"prepare {runtime.id} ({', '.join(s.arch for s in snaps)})"):
        images, index = prepare_images(run.work, snaps, settings.epoch)
        pins = go_pins(run.lock)
        sboms = {snap.arch: cell_sbom(run.work, snap, settings.epoch, pins) for snap in snaps}
    artifacts = sbom_artifacts(images, sboms, iso8601(settings.epoch))
    by_arch = {image.arch: image for image in images}

    def documents(tags: dict[str, str | None]) -> dict[str, Document]:
        return {tag: index if a is None else by_arch[a].manifest for tag, a in tags.items()}

    latest = run.matrix.latest(runtime.family)
    moving = documents(moving_tags(runtime, latest=latest is not None and latest.id == runtime.id))
    current = {tag: registry.manifest_digest(repo, tag) for tag in moving}
    own = [tag for tag in moving if tag == runtime.tag or tag.startswith(f"{runtime.tag}-")]
    # Content the runtime's own tags already name is no new release: it keeps its dated tags.
    stamp = None
    if all(current[tag] == moving[tag].digest for tag in own):
        stamp = earlier_release(runtime, registry, repo, index)
    stamp = stamp or dated_stamp(settings.release)
    wanted = {**documents(dated_tags(runtime, stamp)), **moving}
    current.update(
        {tag: registry.manifest_digest(repo, tag) for tag in wanted if tag not in current}
    )
    check_dated(runtime, f"{request.registry.host}/{repo}", wanted, current)
    report.release = stamp
    report.index = index.digest
    report.manifests = {image.arch: image.manifest.digest for image in images}
    report.tags = {tag: doc.digest for tag, doc in wanted.items()}
    changes = release_changes(runtime, registry, repo, stamp, sboms)
    report.changes = {arch: change.as_json() for arch, change in changes.items()}
    if any(current[tag] != doc.digest for tag, doc in wanted.items()):
        with log.step(f"upload {runtime.id} → {request.registry.host}/{repo}"):
            push_images(registry, repo, images, index)
    attach_sboms(registry, repo, artifacts)  # before any tag moves: a tagged image has its SBOM
    report.sboms = {image.arch: item.digest for image, item in zip(images, artifacts, strict=True)}
    if remote:
        check_lease(
            runtime, remote, lease, settings.environ
        )  # another publisher stops us before any tag moves
    move_tags(registry, repo, wanted, current, report.tags_moved)
    if remote:  # last: the branch says "published" only once the registry holds the release
        arches = [s.arch for s in snaps]
        history = history_markdown(stamp, changes)
        content = branch_content(
            run, runtime, arches, snapshots=snaps, sboms=sboms, history=history, remote=remote
        )
        with log.step(f"branch {runtime.id}"):
            branch = push_branch(
                runtime, content, remote, settings.environ, epoch=settings.epoch, expected=lease,
                changes=changelog(stamp, changes),
            )  # fmt: skip
        report.branch = {
            "commit": branch.commit,
            "previous": branch.previous,
            "pushed": branch.pushed,
        }
    return Release(runtime=runtime, images=images, index=index, tags=wanted, sboms=artifacts)


@contextlib.contextmanager
def _runtime_held(run: Run, runtime: Runtime) -> Iterator[None]:
    """The runtime's lock, then its cells' (the order every command takes them in), so that no
    build, snapshot or branch layout of the runtime changes its work folder while it is read
    and published. Folders that are not there are not made for a lock: such a runtime has no
    snapshot to publish, and says so."""
    with contextlib.ExitStack() as held:
        if run.work.runtime_folder(runtime.id).is_dir():
            held.enter_context(run.work.runtime_locked(runtime.id))
            for arch in runtime.architectures:
                cell = run.work.cell(runtime.id, arch)
                if cell.folder.is_dir():
                    held.enter_context(cell.locked())
        yield


def publish_runtime(
    run: Run, runtime: Runtime, registry: Registry, request: PublishRequest, report: RuntimeReport
) -> Release:
    """``_publish_runtime`` under the runtime's locks, with the transfer counts and the final
    status in ``report``; the caller marks the runtime failed when this raises."""
    before = dataclasses.replace(registry.stats)
    try:
        with _runtime_held(run, runtime):
            release = _publish_runtime(run, runtime, registry, request, report)
    finally:
        after = registry.stats
        report.blobs_uploaded = after.blobs_uploaded - before.blobs_uploaded
        report.bytes_uploaded = after.bytes_uploaded - before.bytes_uploaded
        report.blobs_mounted = after.blobs_mounted - before.blobs_mounted
        report.bytes_mounted = after.bytes_mounted - before.bytes_mounted
    written = registry.stats.manifests_written - before.manifests_written
    pushed = report.branch is not None and report.branch["pushed"]
    changed = report.blobs_uploaded or report.blobs_mounted or written or pushed
    report.status = "published" if changed else "unchanged"
    return release


def mirror_runtime(mirror: Registry, ref: RegistryRef, release: Release) -> MirrorReport:
    """The primary's digests, SBOMs and tags on one mirror; a failure makes it ``behind``."""
    runtime, wanted = release.runtime, release.tags
    repo = ref.repository(runtime.family.id)
    where = f"{ref.host}/{repo}"
    result = MirrorReport()
    before = dataclasses.replace(mirror.stats)
    try:
        current = {tag: mirror.manifest_digest(repo, tag) for tag in wanted}
        check_dated(runtime, where, wanted, current)
        if any(current[tag] != doc.digest for tag, doc in wanted.items()):
            with log.step(f"mirror {runtime.id} → {where}"):
                push_images(mirror, repo, release.images, release.index)
                attach_sboms(mirror, repo, release.sboms)
                move_tags(mirror, repo, wanted, current, result.tags_moved)
        else:  # the images are there: their SBOMs too (a mirror filled before SBOMs existed)
            attach_sboms(mirror, repo, release.sboms)
    except Exception as exc:  # a mirror never stops the primary or the other mirrors
        result.reason = failure_reason(exc)
        log.warning(f"{runtime.id}: mirror {ref} is behind: {result.reason}")
        return result
    finally:
        result.blobs_uploaded = mirror.stats.blobs_uploaded - before.blobs_uploaded
    result.status = "published" if result.tags_moved else "unchanged"
    return result


def mirror_releases(
    mirror: Registry, ref: RegistryRef, releases: Sequence[tuple[RuntimeReport, Release]]
) -> None:
    """Each release the primary has, on one mirror; an unreachable mirror is tried once."""
    try:
        if releases:
            mirror.ping()
    except Exception as exc:  # a mirror never stops the primary or the other mirrors
        reason = failure_reason(exc)
        log.warning(f"mirror {ref} is behind: {reason}")
        for report, _ in releases:
            report.mirrors[str(ref)] = MirrorReport(reason=reason)
        return
    for report, release in releases:
        report.mirrors[str(ref)] = mirror_runtime(mirror, ref, release)


def publish(run: Run, request: PublishRequest) -> PublishReport:
    """Publish each runtime of the request on its own, then copy them to each mirror; failures
    are collected in the report, never raised midway, and the report is written even when
    publishing stops early. Mirrors that are behind are logged."""
    ref = request.registry
    report = PublishReport(
        registry=str(ref), git_remote=request.remote, mirrors=[str(m) for m in request.mirrors]
    )
    releases: list[tuple[RuntimeReport, Release]] = []
    clients: list[Registry] = []
    try:
        client = run.registry(ref)
        clients.append(client)
        mirrors = [(m, run.registry(m, mirror_of=ref)) for m in request.mirrors]
        clients += [mirror for _, mirror in mirrors]
        for runtime in request.runtimes:
            result = RuntimeReport(
                runtime=runtime.id, repository=f"{ref.host}/{ref.repository(runtime.family.id)}"
            )
            report.runtimes.append(result)
            try:
                releases.append((result, publish_runtime(run, runtime, client, request, result)))
            except Exception as exc:  # one runtime's failure never stops the others
                result.status, result.reason = "failed", failure_reason(exc)
                if run.settings.debug:
                    log.detail(traceback.format_exc())
                log.error(f"{runtime.id}: not published: {result.reason}")
                if result.tags_moved:
                    log.error(f"{runtime.id}: tags already moved: {', '.join(result.tags_moved)}")
            log.info(f"{runtime.id}: {result.status}")
        # Mirrors after every runtime is on the primary, so that none of them delays it.
        for mirror_ref, mirror in mirrors:
            mirror_releases(mirror, mirror_ref, releases)
    except BaseException as exc:  # the report says why it stopped, then the error goes on
        report.error = failure_reason(exc) if isinstance(exc, Exception) else "interrupted"
        raise
    finally:
        for opened in clients:
            opened.session.close()
        if request.report is not None:
            try:
                write_json(request.report, report.as_json())
            except OSError as exc:
                msg = f"--report {request.report}: cannot write the report ({exc.strerror})"
                raise PublishError(msg) from None
    for mirror_name, behind in report.mirrors_behind.items():
        log.warning(f"mirror {mirror_name} is behind on {', '.join(behind)} (see --report)")
    return report


# --- a runtime's branch alone, and rebuild ------------------------------------------------------


def push_runtime_branch(
    run: Run, runtime: Runtime, remote: str, arches: Sequence[str] | None = None
) -> BranchResult:
    """Lay out and push the branch of a runtime whose every architecture has a snapshot.
    When the last push from this work folder sent the same content to ``remote`` and the
    branch is still at its commit, nothing is committed: one ``ls-remote`` decides."""
    built = list(arches or runtime.architectures)
    missing = [a for a in runtime.architectures if a not in built]
    if missing:
        msg = (
            f"{runtime.id}: not pushing a branch without {', '.join(missing)}; "
            "rebuild every architecture, or leave out --git-remote"
        )
        raise SnapshotError(msg)
    for arch in built:  # before anything is locked or written
        require_snapshot(run.work.cell(runtime.id, arch))
    content = branch_content(run, runtime, built, remote=remote)
    epoch = run.settings.epoch
    with run.work.runtime_locked(runtime.id), log.step(f"push branch {runtime.id}"):
        sent = content_digest(
            content, epoch=epoch, remote=remote, message=commit_message(runtime.id)
        )
        pushed = run.work.pushed(runtime.id)
        last = read_json(pushed, _pushed_record)
        head = remote_head(remote, runtime.id, run.settings.environ)
        if last is not None and last["content"] == sent and head == last["commit"]:
            log.info(
                f"{runtime.id}: branch already at {head[:12]} with this content, nothing to push"
            )
            return BranchResult(
                runtime=runtime.id, remote=remote, commit=head, previous=head, pushed=False
            )
        result = push_branch(
            runtime, content, remote, run.settings.environ, epoch=epoch, expected=head
        )
        write_json(pushed, {"content": sent, "commit": result.commit})
        return result


def _pushed_record(raw: Any) -> dict[str, str]:
    if not (
        isinstance(raw, dict)
        and isinstance(raw.get("content"), str)
        and isinstance(raw.get("commit"), str)
    ):
        raise ValueError("expected {content, commit}")
    return {"content": raw["content"], "commit": raw["commit"]}


@dataclass(kw_only=True)
class RebuildSummary:
    runtime: str
    cells: list[CellResult] = field(default_factory=list)
    branch_dir: Path | None = None
    branch: BranchResult | None = None
    publish: PublishReport | None = None
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "seconds": self.seconds,
            "skipped": [c.target.key for c in self.cells if c.state == "skipped"],
            "images": [c.as_json() for c in self.cells],
            "branch_dir": str(self.branch_dir),
            "branch": None
            if self.branch is None
            else {
                "remote": self.branch.remote,
                "commit": self.branch.commit,
                "pushed": self.branch.pushed,
            },
            "publish": None if self.publish is None else self.publish.as_json(),
        }


def rebuild(run: Run, request: RebuildRequest) -> RebuildSummary:
    """Every stage for one runtime: its cells (built, tested, snapshotted), its branch content,
    then the branch pushed to the remote — or, with a registry, the whole runtime published
    there (its branch last, laid out once, by the publish)."""
    started = time.monotonic()
    runtime = request.runtime
    summary = RebuildSummary(runtime=runtime.id)
    targets = locked_targets(run, [runtime], request.arches)
    for target in targets:
        summary.cells.append(
            run_cell(run, target, force=request.force, no_cache=request.no_cache, snapshot=True)
        )
    built = [t.arch.name for t in targets]
    if request.registry is not None and request.remote:
        summary.publish = publish(
            run,
            PublishRequest(runtimes=(runtime,), registry=request.registry, remote=request.remote),
        )
        summary.branch_dir = run.work.branch(runtime.id)
    elif request.remote:
        summary.branch = push_runtime_branch(run, runtime, request.remote, built)
        summary.branch_dir = run.work.branch(runtime.id)
    else:
        summary.branch_dir = branch_content(run, runtime, built)
        if request.registry is not None:
            request_ = PublishRequest(runtimes=(runtime,), registry=request.registry)
            summary.publish = publish(run, request_)
    summary.seconds = round(time.monotonic() - started, 1)
    return summary
