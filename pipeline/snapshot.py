"""Snapshot: an image → normalized, compressed layer tarballs and the Dockerfiles that ADD them.

Per cell, ``layers/<sha256>.tar.xz`` (named by the sha256 of the file itself, so ``sha256sum``
checks it) and the ``snapshot.json`` record (layer order, diff IDs, config); see workdir.py.
``assemble_branch`` then lays out a runtime's branch content the way AWS's repository does::

    Dockerfile.<runtime>           the x86_64 image, paths relative to the root
    README.md
    x86_64/Dockerfile.<runtime>    the same, paths relative to x86_64/
    x86_64/<sha256>.tar.xz
    x86_64/sbom.cdx.json           what the x86_64 image holds (CycloneDX 1.6, see sbom.py)
    arm64/Dockerfile.<runtime>
    arm64/<sha256>.tar.xz
    arm64/sbom.cdx.json

Layers keep the image's own order, whiteouts included, so a later layer's deletions and overwrites
survive the round trip where ``ADD`` honours whiteouts: the classic builder does (Docker 20.10 and
26 measured), BuildKit does not (its ``ADD`` writes ``.wh.`` entries as plain files and the deleted
files stay). Whiteouts that hide nothing in the layers below are dropped, and a layer with no
entries at all (BuildKit makes one for a ``WORKDIR`` that exists already) is left out. Tarballs
are byte-reproducible: entries sorted, mtimes clamped to SOURCE_DATE_EPOCH, owner names dropped,
one xz mode (multi-threaded, whose output does not depend on the thread count).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Final

import docker.errors

from . import log, progress, sbom
from .digests import CHUNK, sha256_file
from .errors import SnapshotError
from .matrix import Arch, Runtime, Target
from .oci.archive import read_engine_image
from .oci.layers import deletions_above, is_empty_layer, normalize_layer, unchanged_folders
from .records import ArchSnapshot, ImageConfig, Layer
from .text import plain_line
from .workdir import (
    SNAPSHOT,
    Cell,
    UnreadableRecord,
    WorkDir,
    atomic_file,
    remove_stale,
    write_atomic,
)

# xz in multi-threaded mode: its output is the same for any thread count (xz(1), --threads).
XZ_ARGS: Final = ("xz", "--format=xz", "-6", "--threads=0", "--check=crc64", "--stdout")


def require_snapshot(cell: Cell) -> ArchSnapshot:
    """The cell's snapshot, or a SnapshotError (one line) saying how to make one."""
    try:
        snap = ArchSnapshot.read_strict(cell)
    except UnreadableRecord as exc:
        raise SnapshotError(f"{exc}; run `lambda-images snapshot` again") from None
    if snap is None:
        msg = f"{cell.record(SNAPSHOT)}: no snapshot; run `lambda-images snapshot` first"
        raise SnapshotError(msg)
    missing = snap.missing_layers(cell)
    if missing:
        msg = (
            f"{cell.layers / missing[0]}: a layer of the snapshot is missing"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; run "
            "`lambda-images snapshot` again"
        )
        raise SnapshotError(msg)
    return snap


def compress_xz(
    source: Path, folder: Path, meter: progress.Meter | None = None
) -> tuple[str, int, Path]:
    """Compress to ``folder/<sha256>.tar.xz``; return (sha256, size, path). ``meter`` is
    advanced by what xz has read, as it reads."""
    with atomic_file(folder, ".xz-") as pending, source.open("rb") as inp:
        # xz reads from our open file: its offset, which we share, is how far it has got.
        with subprocess.Popen(
            XZ_ARGS, stdin=inp, stdout=pending.stream, stderr=subprocess.PIPE
        ) as proc:
            read = 0
            while True:
                try:
                    proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if meter is not None:
                        now = os.lseek(inp.fileno(), 0, os.SEEK_CUR)
                        meter.advance(now - read)
                        read = now
            errors = proc.stderr.read() if proc.stderr else b""
        if meter is not None:
            meter.advance(source.stat().st_size - read)
        if proc.returncode != 0:
            raise SnapshotError(f"xz failed on {source.name}: {errors.decode().strip()}")
        pending.stream.flush()
        sha = sha256_file(pending.path)
        final = pending.keep(folder / f"{sha}.tar.xz")
        return sha, final.stat().st_size, final


def decompressed_digest(path: Path) -> str | None:
    """``sha256:<hex>`` of what the ``.xz`` file at ``path`` decompresses to (xz checks each
    block's CRC64 on the way); None when it does not decompress."""
    digest = hashlib.sha256()
    with subprocess.Popen(
        ["xz", "--decompress", "--stdout", "--threads=0", "--", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}" if proc.returncode == 0 else None


def compress_layer(
    normalized: Path,
    diff_id: str,
    folder: Path,
    cache: Path | None,
    meter: progress.Meter | None = None,
) -> tuple[str, int]:
    """``compress_xz`` through a cache keyed by the tar's own digest (and the xz options).

    Compression is deterministic, so a layer several images share (the OS base), or an image
    snapshotted again in another work directory, is compressed once per machine (the cache is
    the user's, beside the Debian bases) and linked into every snapshot that has it.
    """
    if cache is None:
        sha, size, _ = compress_xz(normalized, folder, meter)
        return sha, size
    options = hashlib.sha256("\0".join(XZ_ARGS).encode()).hexdigest()[:12]
    cached = cache / options / f"{diff_id.removeprefix('sha256:')}.tar.xz"
    if cached.is_file():
        # Named by what it decompresses to: checked on every reuse, since a damaged or
        # replaced file would otherwise become a branch tarball under a name of its own.
        if decompressed_digest(cached) == diff_id:
            sha = sha256_file(cached)
            final = folder / f"{sha}.tar.xz"
            if not final.exists():
                os.link(cached, final)
            if meter is not None:
                meter.advance(normalized.stat().st_size)
            return sha, final.stat().st_size
        log.warning(f"{cached}: not the layer {diff_id[:19]} it is named for; compressed again")
        cached.unlink(missing_ok=True)
    sha, size, path = compress_xz(normalized, folder, meter)
    cached.parent.mkdir(parents=True, exist_ok=True)
    # Link under a private name, then rename: a concurrent snapshot may be caching it too.
    private = cached.with_name(f".{sha}.{os.getpid()}.{threading.get_ident()}")
    os.link(path, private)
    private.replace(cached)
    return sha, size


def warm_layer_cache(
    client: Any, image_name: str, cache: Path, epoch: int
) -> threading.Thread | None:
    """Start compressing ``image_name``'s layers into ``cache`` in the background.

    Called with the OS base image while a runtime builds on it: the base layer is most of every
    image, and its compression then overlaps the build instead of following it. The snapshot
    finds the result by diff ID; a layer that differs is simply compressed again. Returns the
    thread to join before snapshotting, or None when this image was warmed before or another
    process is warming it now.

    ``warmed/<id>`` says an image was warmed, and is written only once it was; while one process
    warms it, it holds ``warmed/.<id>.lock`` (flock, let go by the kernel however the process
    ends), so a warming killed midway is done again by the next build, and its staging folder
    (``.warm-<id>-…``) is removed then.
    """
    image_id = client.images.get(image_name).id.removeprefix("sha256:")
    warmed = cache / "warmed"
    if (warmed / image_id).exists():
        return None
    warmed.mkdir(parents=True, exist_ok=True)
    claim = _claim_warming(warmed, image_id)
    if claim is None:  # another process is warming it
        return None
    if (warmed / image_id).exists():  # it finished while we asked
        os.close(claim)
        return None

    def work() -> None:
        staging: Path | None = None
        try:
            _remove_stale_warming(cache, image_id)
            staging = Path(tempfile.mkdtemp(prefix=f".warm-{image_id}-", dir=cache))
            _, tars = export_image(client, image_name, staging)
            out = staging / "out"
            out.mkdir()
            above, unchanged = deletions_above(tars), unchanged_folders(tars)
            total = sum(tar.stat().st_size for tar in tars)
            with progress.transfer(f"compress the layers of {image_name}", total) as meter:
                for index, tar in enumerate(tars):
                    normalized = staging / f"layer-{index}.tar"
                    diff_id, _ = normalize_layer(
                        tar, normalized, epoch, above[index], unchanged[index]
                    )
                    compress_layer(normalized, diff_id, out, cache, meter)
                    meter.advance(tar.stat().st_size - normalized.stat().st_size)
                    normalized.unlink()
            write_atomic(warmed / image_id, b"")
        except Exception as exc:  # only a head start: the snapshot does the work anyway
            log.detail(f"  warming the layer cache from {image_name} failed: {exc}")
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            os.close(claim)  # lets go of the claim

    thread = threading.Thread(target=work, name=f"warm {image_name}", daemon=True)
    thread.start()
    return thread


def _claim_warming(warmed: Path, image_id: str) -> int | None:
    """A descriptor holding ``warmed/.<id>.lock``, or None when another process holds it."""
    fd = os.open(warmed / f".{image_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove_stale_warming(cache: Path, own: str) -> None:
    """Staging folders of warmings that no process holds any more (killed ones); ``own`` is
    the image whose claim this process holds: any folder of it is a killed one's."""
    for path in cache.glob(".warm-*"):
        image_id = path.name.removeprefix(".warm-").partition("-")[0]
        if image_id == own:
            shutil.rmtree(path, ignore_errors=True)
            continue
        if len(image_id) != 64:  # named before warmings had a claim: a day is plenty
            if time.time() - path.stat().st_mtime > 86400:
                shutil.rmtree(path, ignore_errors=True)
            continue
        claim = _claim_warming(cache / "warmed", image_id)
        if claim is not None:
            try:
                shutil.rmtree(path, ignore_errors=True)
            finally:
                os.close(claim)


# --- Dockerfile text (pure) -----------------------------------------------------------------


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _env_value(value: str, what: str) -> str:
    """A value as a Dockerfile double-quoted string. A Dockerfile line cannot carry a newline
    (or any control character) inside a value: such a value is refused, not written."""
    found = _CONTROL.search(value)
    if found:
        msg = (
            f"{what}: the value holds the control character U+{ord(found.group()):04X}, which "
            "a Dockerfile line cannot carry; expected one line of printable text"
        )
        raise SnapshotError(msg)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# What a USER or WORKDIR value may hold and still be written bare, as AWS's Dockerfiles do
# (`WORKDIR /var/task`): nothing the Dockerfile's word lexer reads as a quote, an escape, a
# variable or a separator.
_BARE_WORD = re.compile(r"[A-Za-z0-9_./:@%+,=-]+")


def _word(value: str, what: str) -> str:
    """A USER or WORKDIR value as one Dockerfile word: bare when it holds only plain
    characters, else double-quoted with its quotes, backslashes and ``$`` escaped (as ENV and
    LABEL values are), so that no value adds a line, an instruction or a variable."""
    return value if _BARE_WORD.fullmatch(value) else _env_value(value, what)


def _checked_key(key: str, *, env: bool) -> str:
    if not key or _CONTROL.search(key) or (env and not _ENV_NAME.fullmatch(key)):
        shown = key.encode("unicode_escape").decode()
        kind = "an environment variable" if env else "a label"
        raise SnapshotError(f"{shown!r}: not a name of {kind} that a Dockerfile line can carry")
    return key


def snapshot_dockerfile(snap: ArchSnapshot, prefix: str) -> str:
    """The FROM scratch Dockerfile that rebuilds ``snap``; layer paths start with ``prefix``."""
    lines = [
        f"# {snap.runtime} ({snap.arch}), rebuilt from its layers in the image's own order.",
        "# Generated by lambda-images; do not edit.",
        "FROM scratch",
    ]
    lines += [f"ADD {prefix}{layer.file} /" for layer in snap.layers]
    for item in snap.config.env:
        key, _, value = item.partition("=")
        lines.append(f"ENV {_checked_key(key, env=True)}={_env_value(value, f'ENV {key}')}")
    for key, value in snap.config.labels.items():
        label = json.dumps(_checked_key(key, env=False))
        lines.append(f"LABEL {label}={_env_value(value, f'LABEL {key}')}")
    if snap.config.user:
        lines.append(f"USER {_word(snap.config.user, 'USER')}")
    if snap.config.working_dir:
        lines.append(f"WORKDIR {_word(snap.config.working_dir, 'WORKDIR')}")
    # The exec (JSON) form: json.dumps escapes every control character and quote, so a value
    # stays inside its string; ImageConfig refused anything but a list of strings.
    if snap.config.entrypoint:
        lines.append(f"ENTRYPOINT {json.dumps(snap.config.entrypoint)}")
    if snap.config.cmd:
        lines.append(f"CMD {json.dumps(snap.config.cmd)}")
    return "\n".join(lines) + "\n"


def cell_sbom(
    work: WorkDir, snap: ArchSnapshot, epoch: int, pins: sbom.GoPins | None = None
) -> bytes:
    """The SBOM of a snapshot, from its layer tarballs (kept in the cell once made); ``pins``
    name the version of Go programs the lock file pins (see sbom.go_packages)."""
    cell = work.cell(snap.runtime, snap.arch)
    return sbom.cell_sbom(
        cell.sbom,
        runtime=snap.runtime,
        arch=snap.arch,
        layers=[cell.layers / layer.file for layer in snap.layers],
        diff_ids=[layer.diff_id for layer in snap.layers],
        epoch=epoch,
        pins=pins,
    )


def read_licence(path: Path) -> str:
    """The project's licence (Apache-2.0) a branch carries, from its checkout's LICENSE."""
    try:
        return path.read_text("utf-8")
    except OSError as exc:
        msg = f"{path}: cannot read the project's licence a branch carries ({exc.strerror})"
        raise SnapshotError(msg) from None


def sbom_path(arches: Sequence[str], arch: str) -> str:
    """Where an architecture's SBOM sits in the branch."""
    return sbom.FILE_NAME if list(arches) == ["x86_64"] else f"{arch}/{sbom.FILE_NAME}"


def branch_readme(
    runtime: Runtime,
    arches: Sequence[str],
    *,
    sboms: bool = False,
    history: Sequence[str] = (),
    remote: str | None = None,
) -> str:
    """The branch README; ``sboms`` names the SBOM files, ``history`` is the change history
    section's lines (markdown) when publishing has one, ``remote`` the git remote the branch
    is pushed to (a checked URL: no credentials), which its clone command names."""
    rt = runtime.id
    lines = [
        f"# {runtime.name} ({rt}) — Lambda base image snapshot",
        "",
        f"The layers of the `{rt}` base image ({runtime.os.name}; {', '.join(arches)}) as",
        "normalized tarballs (Git LFS), and `FROM scratch` Dockerfiles that `ADD` them in the",
        "image's own layer order. Generated by lambda-images; every push replaces this branch.",
        "Licensed under the Apache License 2.0 (`LICENSE`).",
        "",
    ]
    if remote is not None:
        # One plain line: a remote is a word of a shell command here, never a line break.
        clone = plain_line(f"git clone -b {rt} {shlex.quote(remote)} {rt} && cd {rt}", 1000)
        lines += ["Build it (git-lfs must be installed so that the tarballs are fetched):", "",
                  "```", clone]  # fmt: skip
    else:
        lines += ["Build it, in a clone of this branch (with git-lfs, for the tarballs):", "",
                  "```"]  # fmt: skip
    lines += [f"docker build -t {rt}:local -f Dockerfile.{rt} .", "```", ""]
    if "arm64" in arches:
        lines += [
            "For arm64, build inside `arm64/` with a builder that honours `--platform`",
            "(BuildKit, `docker buildx`, or `podman build`):",
            "",
            "```",
            f"cd arm64 && docker buildx build --platform linux/arm64 -t {rt}:arm64 "
            f"-f Dockerfile.{rt} .",
            "```",
            "",
            "Docker's classic builder labels every `FROM scratch` image with the host's",
            "architecture; its files are still arm64 and run under qemu or on an arm64 host.",
            "",
        ]
    if sboms:
        lines += [
            "## Software bill of materials",
            "",
            "What each image holds (OS packages, language packages, the runtime interface",
            "client, Go programs), with versions, licences and package URLs, as CycloneDX 1.6",
            "JSON made from these very layers; the same document is attached to the image in",
            "the registry (OCI referrers, artifact type `application/vnd.cyclonedx+json`):",
            "",
        ]
        lines += [f"- {arch}: `{sbom_path(arches, arch)}`" for arch in arches]
        lines.append("")
    if history:
        lines += ["## Change history", "", *history, ""]
    return "\n".join(lines)


# --- engine side ----------------------------------------------------------------------------


def export_image(client: Any, image: str, folder: Path) -> tuple[dict[str, Any], list[Path]]:
    """`docker save` one image; its layers are written to ``folder`` as plain tars. Returns
    the image config and the layer files in the image's order."""
    log.command(["docker", "save", image])

    def keep(path: str, tar: IO[bytes]) -> Path:
        # Named by the archive's own path: unique, and a layer listed twice is written once.
        dest = folder / (path.replace("/", "_") + ".in.tar")
        with dest.open("wb") as out:
            shutil.copyfileobj(tar, out, CHUNK)
        return dest

    saved = read_engine_image(client, image, keep)
    return saved.config, saved.layers


def snapshot_target(
    target: Target, client: Any, work: WorkDir, epoch: int, layer_cache: Path | None
) -> ArchSnapshot:
    """Snapshot a target's built image into its cell, reusing compressed layers from
    ``layer_cache`` (see compress_layer)."""
    return snapshot_image(
        client,
        target.image_tag,
        runtime_id=target.runtime.id,
        arch=target.arch,
        cell=work.cell(target.runtime.id, target.arch.name),
        epoch=epoch,
        layer_cache=layer_cache,
    )


def snapshot_image(
    client: Any,
    image_name: str,
    *,
    runtime_id: str,
    arch: Arch,
    cell: Cell,
    epoch: int,
    layer_cache: Path | None = None,
) -> ArchSnapshot:
    """Export ``image_name``, write the cell's ``layers/*.tar.xz`` and ``snapshot.json``
    (compressed layers are reused from ``layer_cache`` when given)."""
    try:
        image = client.images.get(image_name)
    except docker.errors.ImageNotFound:
        msg = f"no image {image_name} in the engine; build it first (lambda-images build)"
        raise SnapshotError(msg) from None
    with cell.locked():  # callers may hold it already (it is the process's)
        remove_stale(cell.folder, ".snapshot-")  # what a killed snapshot left: none is live
        return _snapshot_image(
            client, image, image_name, runtime_id, arch, cell, epoch, layer_cache
        )


def _snapshot_image(
    client: Any,
    image: Any,
    image_name: str,
    runtime_id: str,
    arch: Arch,
    cell: Cell,
    epoch: int,
    layer_cache: Path | None,
) -> ArchSnapshot:
    folder, layers_dir = cell.folder, cell.layers
    staging = Path(tempfile.mkdtemp(prefix=".snapshot-", dir=folder))
    try:
        config, layer_tars = export_image(client, image_name, staging)
        if config.get("architecture") != arch.docker:
            msg = f"{image_name} is {config.get('architecture')}, not {arch.docker}"
            raise SnapshotError(msg)
        # Layer files are named by their content, so the new ones go straight beside the old:
        # a name already there is the same bytes, and snapshot.json (written last, atomically)
        # is what switches from the old snapshot to the new one. At every moment, the record
        # in place names files that are all there; a killed snapshot leaves the old one whole.
        layers_dir.mkdir(exist_ok=True)

        above, unchanged = deletions_above(layer_tars), unchanged_folders(layer_tars)
        total = sum(tar.stat().st_size for tar in layer_tars)

        title = f"compress {runtime_id}/{arch.name}"
        with progress.transfer(title, total) as meter:

            def one(index_and_tar: tuple[int, Path]) -> Layer | None:
                index, tar = index_and_tar
                normalized = staging / f"layer-{index}.tar"
                diff_id, size = normalize_layer(
                    tar, normalized, epoch, above[index], unchanged[index]
                )
                # What the meter counts is the normalized tar; the total, the exported ones.
                meter.advance(tar.stat().st_size - normalized.stat().st_size)
                if is_empty_layer(normalized):
                    meter.advance(normalized.stat().st_size)
                    normalized.unlink()
                    return None
                sha, compressed = compress_layer(
                    normalized, diff_id, layers_dir, layer_cache, meter
                )
                normalized.unlink()
                return Layer(
                    file=f"{sha}.tar.xz",
                    sha256=sha,
                    diff_id=diff_id,
                    size=size,
                    compressed_size=compressed,
                )

            # Largest first: each xz spreads its blocks over every core, and a large layer
            # started last would leave the other cores idle while it finishes alone.
            workers = max(1, min(len(layer_tars), os.cpu_count() or 1))
            largest_first = sorted(
                enumerate(layer_tars), key=lambda it: it[1].stat().st_size, reverse=True
            )
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = pool.map(one, largest_first)
                made = dict(zip([i for i, _ in largest_first], results, strict=True))
            layers = [layer for i in range(len(layer_tars)) if (layer := made[i])]
        try:
            image_config = ImageConfig.from_docker(config)
        except ValueError as exc:
            raise SnapshotError(f"{image_name}: its config cannot be snapshotted: {exc}") from None
        snap = ArchSnapshot(
            runtime=runtime_id,
            arch=arch.name,
            docker_arch=arch.docker,
            image_id=image.id,
            layers=layers,
            config=image_config,
        )
        snap.write(cell)
        _remove_unlisted(layers_dir, {layer.file for layer in layers})
        return snap
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove_unlisted(folder: Path, keep: set[str]) -> None:
    """Remove what a snapshot record no longer names: the previous snapshot's layers, and the
    temporary files of a killed one."""
    for path in folder.iterdir():
        if path.name not in keep:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def branch_files(
    runtime: Runtime,
    snapshots: Iterable[ArchSnapshot],
    *,
    sboms: Mapping[str, bytes] | None = None,
    history: Sequence[str] = (),
    remote: str | None = None,
    licence: str | None = None,
) -> dict[str, str]:
    """Text files of a branch (path → content); tarballs are linked in by assemble_branch.
    ``sboms`` (arch → document) go beside each architecture's layers; the project's
    ``licence`` goes at the root as LICENSE, as AWS's branches carry theirs."""
    snaps = {s.arch: s for s in snapshots}
    arches = [a for a in runtime.architectures if a in snaps]
    readme = branch_readme(runtime, arches, sboms=bool(sboms), history=history, remote=remote)
    files = {"README.md": readme}
    if licence is not None:
        files["LICENSE"] = licence
    for arch, document in (sboms or {}).items():
        if arch in snaps:
            files[sbom_path(arches, arch)] = document.decode("utf-8")
    dockerfile = f"Dockerfile.{runtime.id}"
    if arches == ["x86_64"]:
        # Single-architecture runtimes keep one Dockerfile and the tarballs at the root.
        files[dockerfile] = snapshot_dockerfile(snaps["x86_64"], "")
        return files
    root_arch = "x86_64" if "x86_64" in arches else arches[0]
    files[dockerfile] = snapshot_dockerfile(snaps[root_arch], f"{root_arch}/")
    for arch in arches:
        files[f"{arch}/{dockerfile}"] = snapshot_dockerfile(snaps[arch], "")
    return files


def assemble_branch(
    runtime: Runtime,
    work: WorkDir,
    arches: Sequence[str] | None = None,
    *,
    snapshots: Sequence[ArchSnapshot] | None = None,
    epoch: int | None = None,
    pins: sbom.GoPins | None = None,
    sboms: Mapping[str, bytes] | None = None,
    history: Sequence[str] = (),
    remote: str | None = None,
    licence: str | None = None,
) -> Path:
    """Lay out the runtime's branch folder from the per-arch snapshots; return its path.

    ``snapshots`` replaces the records read from the work directory (publish passes them with
    the labels it adds, so that the branch and the registry describe the same image). Each
    architecture's SBOM goes beside its layers: ``sboms`` when given, else made from the
    layers with ``epoch`` as its timestamp (none without either); ``history`` is the README's
    change history, ``remote`` the git remote its clone command names, ``licence`` the text
    of its LICENSE.
    """
    wanted = list(arches or runtime.architectures)
    if snapshots is not None:
        snaps = list(snapshots)
    else:
        snaps = [require_snapshot(work.cell(runtime.id, arch)) for arch in wanted]
    if sboms is None and epoch is not None:
        sboms = {snap.arch: cell_sbom(work, snap, epoch, pins) for snap in snaps}
    files = branch_files(
        runtime, snaps, sboms=sboms, history=history, remote=remote, licence=licence
    )
    # The runtime's lock, then its cells' (the order every command takes them in): no snapshot
    # replaces a layer while it is linked here. Callers may hold them already (they are the
    # process's).
    with contextlib.ExitStack() as held:
        held.enter_context(work.runtime_locked(runtime.id))
        for snap in snaps:
            held.enter_context(work.cell(runtime.id, snap.arch).locked())
        remove_stale(work.runtime_folder(runtime.id), ".branch-")  # a killed layout's: not live
        return _lay_out_branch(runtime, work, snaps, files)


def _lay_out_branch(
    runtime: Runtime, work: WorkDir, snaps: Sequence[ArchSnapshot], files: Mapping[str, str]
) -> Path:
    dest = work.branch(runtime.id)
    staging = Path(tempfile.mkdtemp(prefix=".branch-", dir=work.runtime_folder(runtime.id)))
    try:
        for rel, text in files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
        single_root = [s.arch for s in snaps] == ["x86_64"]
        for snap in snaps:
            sub = staging if single_root else staging / snap.arch
            sub.mkdir(exist_ok=True)
            for layer in snap.layers:
                src = work.cell(runtime.id, snap.arch).layers / layer.file
                target = sub / layer.file
                if not target.exists():
                    os.link(src, target)
        old = dest.with_name(".branch-old")
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            dest.rename(old)
        staging.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
