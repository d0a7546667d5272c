"""Base: the operating-system image every runtime of an OS is built FROM.

Debian bases are built here with mmdebstrap from the suite, its -updates and its -security archive
(apt.py), reproducibly (SOURCE_DATE_EPOCH), cached by their inputs *and the archives' current
state*, and loaded into the engine as a one-layer image archive whose config names the target
architecture and carries that state as a label — so an archive update gives a new base image id,
and every image built on it (and its build cache) moves with it; a base built from an older
state is never reused. (Docker 20.10's classic builder labels ``FROM scratch`` and ``docker
import`` images with the host architecture; ``docker load`` keeps what the config says.)

Amazon Linux bases are pulled by the digest pinned in the lock file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import docker.errors

from . import apt, log, progress
from .digests import sha256_file
from .epoch import iso8601
from .errors import BaseImageError, EngineError
from .lock import Lock
from .matrix import Arch, ImageBase, RootfsBase, Target
from .workdir import flocked, write_atomic

# Documentation and translations are not needed in a Lambda image; copyright files stay.
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
# Files apt and dpkg leave behind that the templates' package step deletes again
# (templates/_partials/packages.j2). They are kept out of the base too: a later layer that deletes
# a file of the base carries a whiteout for it, and BuildKit's ADD of a snapshot layer does not
# replay whiteouts (it would write them as files and keep the deleted ones in the branch's image).
TRANSIENT_FILES = (
    "var/lib/apt/lists/*",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "var/log/apt",
    "var/log/dpkg.log",
)
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The base image label holding the digest of the archives' state the root was made from.
APT_STATE_LABEL = "lambda-base-images.apt-state"


@dataclass(frozen=True, kw_only=True)
class BaseRecord:
    name: str  # local image name, e.g. lambda-images/base-debian12:arm64
    image_id: str  # sha256:… of the image config: what the engine calls the image
    architecture: str  # docker architecture in the image config
    source: str  # how it was obtained: the mmdebstrap command or the pinned reference
    cached: bool  # True when nothing had to be built or pulled
    apt_state: str = ""  # Debian: digest of the archives' state (apt.states_digest)
    folder: str = ""  # Debian: the cache folder of its root and image archive


def mmdebstrap_command(base: RootfsBase, debian_arch: str, output: Path) -> list[str]:
    argv = [
        "mmdebstrap",
        "--quiet",
        f"--variant={base.variant}",
        f"--architectures={debian_arch}",
        "--format=tar",
    ]
    if base.include:
        argv.append(f"--include={','.join(base.include)}")
    argv += [f"--dpkgopt={opt}" for opt in DPKG_EXCLUDES]
    transient = " ".join(f'"$1"/{path}' for path in TRANSIENT_FILES)
    argv.append(f"--customize-hook=rm -rf {transient}")
    # Full sources lines: mmdebstrap installs from all of them (apt takes the newest version)
    # and writes them to the root's /etc/apt/sources.list, which later RUN steps use.
    # After "--": operands, never options.
    argv += ["--", base.suite, str(output), *(apt.sources_line(a) for a in apt.archives(base))]
    return argv


def _rootfs_key(base: RootfsBase, debian_arch: str, epoch: int, apt_state: str) -> str:
    # Keyrings decide which archive states are accepted, not what a root made from one holds.
    fields = asdict(base)
    fields.pop("keyring")
    for archive in fields["extra_archives"]:
        archive.pop("keyring")
    inputs = {
        "base": fields,
        "arch": debian_arch,
        "epoch": epoch,
        "excludes": DPKG_EXCLUDES,
        "transient": TRANSIENT_FILES,
        "apt_state": apt_state,
        # What the cache folder keeps beside the root: a folder made before the Release files
        # were kept is not found, so every cached root can tell the versions it was made from.
        "kept": ["archives.json", "releases"],
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


# How often the archives may move while mmdebstrap runs before giving up (they move a few times
# a day, so a second try practically always finds them still).
STATE_ATTEMPTS = 2


def build_rootfs(
    target: Target, base: RootfsBase, cache: Path, epoch: int, environ: Mapping[str, str]
) -> tuple[Path, bool]:
    """The rootfs tarball of a Debian base, built once per set of inputs and archive state
    (mmdebstrap runs with ``environ``, Settings.environ).

    The archives' state is read before and after mmdebstrap: a root made while an archive moved
    is thrown away and made again, so the state recorded beside it is the one it came from."""
    arch = target.arch.debian
    for _ in range(STATE_ATTEMPTS):
        states = apt.read_states(base, arch)
        state = apt.states_digest(states)
        key = _rootfs_key(base, arch, epoch, state)
        folder = cache / "base" / f"{target.runtime.os.id}-{arch}-{key}"
        rootfs = folder / "rootfs.tar"
        if rootfs.is_file():
            return folder, True
        # One mmdebstrap per cache entry: a second process waits for the first and finds it.
        with flocked(folder.parent / f".{folder.name}.lock", f"the {folder.name} base cache"):
            if rootfs.is_file():
                return folder, True
            if _make_rootfs(target, base, folder, epoch, states, environ):
                return folder, False
        log.info(f"{target.runtime.os.id}/{arch}: an archive moved meanwhile; once more")
    msg = (
        f"{target.runtime.os.id}/{arch}: the Debian archives kept changing while the base was "
        "made; try again in a few minutes"
    )
    raise BaseImageError(msg)


def _make_rootfs(
    target: Target,
    base: RootfsBase,
    folder: Path,
    epoch: int,
    states: list[apt.ArchiveState],
    environ: Mapping[str, str],
) -> bool:
    """Make the root into ``folder``; False (and nothing kept) when an archive moved while
    mmdebstrap ran, since the root might then mix two states."""
    arch = target.arch.debian
    rootfs = folder / "rootfs.tar"
    if shutil.which("mmdebstrap", path=environ.get("PATH", "")) is None:
        msg = (
            "mmdebstrap is not installed; it builds the Debian base "
            "(apt-get install mmdebstrap, and qemu-user-static for foreign architectures)"
        )
        raise BaseImageError(msg)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        argv = mmdebstrap_command(base, arch, staging / "rootfs.tar")
        log.command(argv)
        # mmdebstrap makes the root in a folder of $TMPDIR before it packs it: in the staging
        # folder, the root's growth is the step's progress, and the size of the last root made
        # here for this OS (any architecture) its expected total.
        env = {**environ, "SOURCE_DATE_EPOCH": str(epoch), "TMPDIR": str(staging)}
        what = f"{target.runtime.os.id}/{arch} root (mmdebstrap)"
        with progress.transfer(what, _expected_bytes(folder.parent, target.runtime.os.id)) as m:
            peak, proc, out, err = _watched(argv, env, staging, m)
        if proc.returncode != 0:
            tail = "\n".join((err or out).strip().splitlines()[-5:])
            what = f"{target.runtime.os.id}/{arch} (exit {proc.returncode})"
            msg = f"mmdebstrap failed for {what}: {tail}"
            raise BaseImageError(msg)
        if apt.states_digest(apt.read_states(base, arch)) != apt.states_digest(states):
            return False
        (staging / "command.json").write_text(json.dumps(argv) + "\n")
        (staging / "size.json").write_text(json.dumps({"root_bytes": peak}) + "\n")
        (staging / "archives.json").write_text(json.dumps(_states_record(states), indent=2))
        (staging / "releases").mkdir()
        for state in states:  # the state's Release files: its indices, by hash (apt.py)
            (staging / "releases" / state.release_sha256).write_bytes(state.release)
        try:
            staging.rename(folder)  # atomic: a concurrent run may have won the race
        except OSError:
            if not rootfs.is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return True


def _watched(
    argv: list[str], env: Mapping[str, str], staging: Path, meter: progress.Meter
) -> tuple[int, subprocess.Popen[str], str, str]:
    """Run mmdebstrap; every second, the bytes its root holds so far go to ``meter``. The
    largest count seen (the root before it is packed and removed), the process, its output."""
    peak = 0
    with subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        while True:
            try:
                out, err = proc.communicate(timeout=1)
                return peak, proc, out, err
            except subprocess.TimeoutExpired:
                peak = max(peak, _tree_bytes(staging))
                meter.update(peak)


def _tree_bytes(root: Path) -> int:
    """The bytes of the regular files under ``root`` and on its file system (mmdebstrap mounts
    /proc, /sys and /dev into the root it makes), the packed root.tar aside."""
    total, device, folders = 0, root.stat().st_dev, [str(root)]
    while folders:
        try:
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    if st.st_dev != device or entry.name == "rootfs.tar":
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += st.st_size
        except OSError:  # the root changes under us: what vanished is not counted
            continue
    return total


def _expected_bytes(bases: Path, os_id: str) -> int | None:
    """The size of the root last made here for ``os_id`` (on any architecture: the same
    packages), or None when none was."""
    sizes = sorted(bases.glob(f"{os_id}-*/size.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(sizes):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            return int(json.loads(path.read_text())["root_bytes"])
    return None


def _states_record(states: list[apt.ArchiveState]) -> dict[str, Any]:
    return {
        "digest": apt.states_digest(states),
        "archives": [
            {"line": s.line, "release_sha256": s.release_sha256, "indices": dict(s.indices)}
            for s in states
        ],
    }


def find_rootfs(cache: Path, os_id: str, debian_arch: str, apt_state: str) -> Path | None:
    """The cached root of ``os_id``/``debian_arch`` made from the archives' state ``apt_state``
    (the base image's APT_STATE_LABEL), if this machine's cache holds it."""
    for record in sorted((cache / "base").glob(f"{os_id}-{debian_arch}-*/archives.json")):
        # (A root made before its Release files were kept has the same state but not them.)
        if rootfs_apt_state(record.parent) == apt_state and (record.parent / "releases").is_dir():
            return record.parent
    return None


def recorded_releases(folder: Path) -> dict[str, bytes]:
    """Sources line → the Release file its archive had when the root in ``folder`` was made
    (for apt.newest_versions: the versions as they were then)."""
    record = json.loads((folder / "archives.json").read_text())
    releases = {}
    for archive in record["archives"]:
        path = folder / "releases" / archive["release_sha256"]
        if path.is_file():
            releases[archive["line"]] = path.read_bytes()
    return releases


def rootfs_apt_state(folder: Path) -> str:
    """The archive-state digest a cached root was made from ("" for a root made before the
    state was recorded: such a folder is never found, its key had no state)."""
    path = folder / "archives.json"
    if not path.is_file():
        return ""
    return str(json.loads(path.read_text()).get("digest", ""))


ROOTFS_DIGEST = "rootfs.tar.sha256"


def rootfs_digest(folder: Path) -> str:
    """The sha256 of a cached root's tarball, read once and kept beside it: a cache folder
    never changes once made (its name is its inputs), and hashing 150 MB on every command
    was most of what an unchanged cell cost."""
    kept = folder / ROOTFS_DIGEST
    try:
        text = kept.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text
    digest = sha256_file(folder / "rootfs.tar")
    write_atomic(kept, (digest + "\n").encode("ascii"))
    return digest


def image_archive(folder: Path, target: Target, name: str, epoch: int) -> tuple[Path, str]:
    """A `docker load` archive around rootfs.tar whose config names the target architecture."""
    archive = folder / f"image-{target.arch.docker}.tar"
    rootfs = folder / "rootfs.tar"
    diff_id = "sha256:" + rootfs_digest(folder)
    created = iso8601(epoch)
    command = json.loads((folder / "command.json").read_text())
    config: dict[str, Any] = {
        "architecture": target.arch.docker,
        "os": "linux",
        "created": created,
        "config": {
            "Env": [DEFAULT_PATH],
            "Cmd": ["bash"],
            "Labels": {APT_STATE_LABEL: rootfs_apt_state(folder)},
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": " ".join(command)}],
    }
    if target.arch.docker == "arm64":
        config["variant"] = "v8"
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    image_id = hashlib.sha256(config_bytes).hexdigest()
    id_file = folder / f"image-{target.arch.docker}.id"
    if archive.is_file() and id_file.is_file() and id_file.read_text() == image_id:
        return archive, "sha256:" + image_id
    manifest = [
        {"Config": f"{image_id}.json", "RepoTags": [name], "Layers": [f"{diff_id[7:]}/layer.tar"]}
    ]
    # Two processes may need the same base at once (a cell and another cell's build stage on
    # this architecture): each writes its own file, the id first, then renames the archive.
    fd, part = tempfile.mkstemp(prefix=f".{archive.name}.", dir=folder)
    os.close(fd)
    staging = Path(part)
    staging.chmod(0o644)
    try:
        with tarfile.open(staging, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
            _add_bytes(tar, f"{image_id}.json", config_bytes)
            tar.add(rootfs, arcname=f"{diff_id[7:]}/layer.tar")
        id_part = staging.with_name(staging.name + ".id")
        id_part.write_text(image_id)
        id_part.replace(id_file)
        staging.replace(archive)
    finally:
        staging.unlink(missing_ok=True)
    return archive, "sha256:" + image_id


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _present(client: Any, name: str) -> Any:
    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        return None


def ensure_base(
    target: Target,
    client: Any,
    lock: Lock,
    *,
    cache: Path,
    epoch: int,
    environ: Mapping[str, str],
) -> BaseRecord:
    """Make the target's OS base image present in the engine under its local name; Debian
    roots are built (or found) under ``cache``, mmdebstrap running with ``environ``."""
    base = target.runtime.os.base
    if isinstance(base, ImageBase):
        return _pull_pinned(target, base, client, lock)
    record = locate_base(target, cache=cache, epoch=epoch, environ=environ)
    return load_base(target, client, record, cache=cache, epoch=epoch)


def locate_base(
    target: Target, *, cache: Path, epoch: int, environ: Mapping[str, str]
) -> BaseRecord:
    """A Debian base's record without asking the engine: its root built (or found) under
    ``cache`` for the archives' current state, and the id the engine gives it once loaded
    (the digest of its config, known beforehand). A cell whose inputs did not change needs no
    more than this; ``load_base`` puts the image into the engine for a build."""
    base = target.runtime.os.base
    if not isinstance(base, RootfsBase):
        raise TypeError(f"{target.runtime.os.id} is not built from packages")
    folder, rootfs_cached = build_rootfs(target, base, cache, epoch, environ)
    _, image_id = image_archive(folder, target, target.base_image, epoch)
    return BaseRecord(
        name=target.base_image,
        image_id=image_id,
        architecture=target.arch.docker,
        source=" ".join(json.loads((folder / "command.json").read_text())),
        cached=rootfs_cached,
        apt_state=rootfs_apt_state(folder),
        folder=str(folder),
    )


def load_base(
    target: Target, client: Any, record: BaseRecord, *, cache: Path, epoch: int
) -> BaseRecord:
    """The located base (``locate_base``) present in the engine under its local name: one
    inspect when it is there already, else loaded from its cached archive."""
    name = record.name
    present = _present(client, name)
    if present is not None and present.id == record.image_id:
        return record
    archive, image_id = image_archive(Path(record.folder), target, name, epoch)
    size = archive.stat().st_size
    with progress.transfer(f"load {name}", size) as meter, meter.reading(archive.open("rb")) as f:
        for chunk in client.api.load_image(f):
            if isinstance(chunk, dict) and chunk.get("errorDetail"):
                raise EngineError(f"loading {name} failed: {chunk['errorDetail'].get('message')}")
    # The archive is cached by content, and its RepoTags name whichever namespace made it first:
    # tag the loaded image (by its id) with this run's name.
    client.images.get(image_id).tag(name)
    loaded = client.images.get(name)
    if loaded.attrs.get("Architecture") != target.arch.docker:
        msg = f"{name} loaded as {loaded.attrs.get('Architecture')}, not {target.arch.docker}"
        raise BaseImageError(msg)
    return dataclasses.replace(record, image_id=loaded.id, cached=False)


def _pull_pinned(target: Target, base: ImageBase, client: Any, lock: Lock) -> BaseRecord:
    digest = lock.base_digest(target.runtime.os.id, target.arch.name)
    reference = f"{base.reference.split(':')[0]}@{digest}"
    name = target.base_image
    log.command(["docker", "pull", "--platform", f"linux/{target.arch.docker}", reference])
    try:
        image = client.images.pull(reference, platform=f"linux/{target.arch.docker}")
    except docker.errors.APIError as exc:
        raise BaseImageError(f"cannot pull {reference}: {exc.explanation or exc}") from None
    image.tag(name)
    return BaseRecord(
        name=name,
        image_id=image.id,
        architecture=image.attrs.get("Architecture", ""),
        source=reference,
        cached=False,
    )


def lock_base_digest(base: ImageBase, arch: Arch) -> str | None:
    """The manifest digest of a pinned base for one architecture, read with skopeo.

    None when skopeo is missing or the registry cannot be reached: the base stays unlocked.
    """
    if shutil.which("skopeo") is None:
        log.warning("skopeo is not installed; base image digests stay unlocked")
        return None
    argv = [
        "skopeo", "inspect", "--override-os=linux", f"--override-arch={arch.docker}",
        f"docker://{base.reference}",
    ]  # fmt: skip
    log.command(argv)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-1:])
        log.warning(f"{base.reference} ({arch.name}): cannot read its digest: {tail}")
        return None
    digest = json.loads(proc.stdout).get("Digest")
    return digest if isinstance(digest, str) and digest.startswith("sha256:") else None
