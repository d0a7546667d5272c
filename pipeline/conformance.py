"""Test: the checks an image must pass before it is snapshotted and published.

Each check has a name and, when it fails, a message that says what is wrong and where. They
follow Lambda's rules for container images
(https://docs.aws.amazon.com/lambda/latest/dg/images-create.html#images-reqs). ``CHECKS`` at
the end of this module is the list: ``run_checks`` runs its entries in order, and the table in
docs/emulator.md is generated from it (``lambda-images docs``; ``docs --check`` fails when it
is stale). Adding a check is one entry there and its function.

The filesystem checks read the image as ``docker save`` exports it: every layer, in order,
merged by oci/tree.py (whiteouts applied).
"""

from __future__ import annotations

import json
import re
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import docker.errors

from . import log
from .digests import sha256_json
from .emulator import LAMBDA_USER, ExecutionEnvironment, FunctionConfig, InvokeResult
from .errors import ConfigurationError, EngineError
from .matrix import Arch
from .oci import tree
from .oci.archive import read_engine_image
from .probes import PROBE_HANDLER, copy_readable
from .records import Check, Report

MAX_UNCOMPRESSED: Final = 10 * 1024**3
MAX_LAYERS: Final = 127  # the most layers the Docker Engine (overlay2) can stack
READABLE_ROOTS: Final = ("/var/task", "/var/runtime", "/var/lang", "/opt")
SCAN_MAX_BYTES: Final = 4 * 1024 * 1024  # credentials live in small files
# Changes the Docker Engine itself makes to every container's filesystem.
ENGINE_PATHS: Final = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev", "/proc", "/sys")
ELF_MACHINES: Final = {62: "amd64", 183: "arm64", 3: "386", 40: "arm"}
_UID, _GID = (int(part) for part in LAMBDA_USER.split(":"))

_SECRETS: Final = (
    ("AWS access key id", re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    (
        "AWS secret access key",
        re.compile(
            rb"(?i)aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"
        ),
    ),
    # A PEM block with a key body (libraries carry the bare marker; docs carry placeholders).
    (
        "private key",
        re.compile(
            rb"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----\s*(?:[A-Za-z-]+: [^\n]*\n\s*)*"
            rb"(?:[A-Za-z0-9+/=]{16,}\s*)+-----END \1PRIVATE KEY-----"
        ),
    ),
)
_SECRET_ENV: Final = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")


# --- the image as docker save exports it ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Entry:
    path: str  # absolute, normalized
    kind: str  # file, dir, symlink, other
    mode: int
    uid: int
    gid: int
    size: int
    linkname: str = ""
    elf: str | None = None  # the architecture of an ELF file


@dataclass(kw_only=True)
class ImageFiles:
    config: dict[str, Any]
    manifest: dict[str, Any]
    merged: dict[str, Entry] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)  # "<what> in <path> (layer N)"
    foreign_layers: list[str] = field(default_factory=list)  # diff IDs


def _elf_arch(head: bytes) -> str | None:
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    byteorder: Any = "little" if head[5] == 1 else "big"
    machine = int.from_bytes(head[18:20], byteorder)
    return ELF_MACHINES.get(machine, f"machine {machine}")


def _scan_secrets(data: bytes) -> list[str]:
    found = []
    for what, pattern in _SECRETS:
        if what == "private key" and data[:4] == b"\x7fELF":
            continue  # crypto libraries embed public self-test keys (GnuTLS does)
        # AWS documents its example keys with EXAMPLE in them; SDK docs are full of them.
        if any(b"EXAMPLE" not in m.group(0) for m in pattern.finditer(data)):
            found.append(what)
    return found


@dataclass(frozen=True, kw_only=True)
class Scan:
    """What the checks need of one file's content: its ELF architecture, credentials in it."""

    elf: str | None
    secrets: list[str]


def _scan(name: str, member: tarfile.TarInfo, content: IO[bytes]) -> Scan:
    if member.size <= SCAN_MAX_BYTES:
        data = content.read()
        return Scan(elf=_elf_arch(data[:20]), secrets=_scan_secrets(data))
    return Scan(elf=_elf_arch(content.read(20)), secrets=[])


def _read_layer(stream: IO[bytes]) -> tree.LayerEntries[Scan]:
    """One layer tar as the checks see it (oci/tree.py reads it)."""
    return tree.read_layer(stream, _scan)


def _entry(item: tree.Entry[Scan]) -> Entry:
    # A hard link is one more name of a file: same inode, same mode (its content was scanned
    # under the first name).
    return Entry(
        path=tree.absolute_name(item.path),
        kind="file" if item.kind == "hardlink" else item.kind,
        mode=item.mode, uid=item.uid, gid=item.gid, size=item.size, linkname=item.linkname,
        elf=item.seen.elf if item.seen is not None and item.kind == "file" else None,
    )  # fmt: skip


def merge_layers(
    layers: Iterable[tree.LayerEntries[Scan]],
) -> tuple[dict[str, Entry], list[str]]:
    """The filesystem the engine stacks from ``layers`` (bottom first), and every credential
    finding as "<what> in <path> (layer N)", deleted files included."""
    files: tree.FileTree[Scan] = tree.FileTree()
    findings: list[str] = []
    for number, layer in enumerate(layers, start=1):
        files.add(layer)
        findings += [
            f"{what} in {tree.absolute_name(item.path)} (layer {number})"
            for item in layer.entries
            if item.kind == "file" and item.seen is not None
            for what in item.seen.secrets
        ]
    return {tree.absolute_name(p): _entry(e) for p, e in files.entries.items()}, findings


def read_image(client: Any, image: str) -> ImageFiles:
    """Every layer of ``image`` (via ``docker save``, either layout), merged the way the engine
    stacks them."""
    saved = read_engine_image(client, image, lambda _path, tar: _read_layer(tar))
    merged, findings = merge_layers(saved.layers)
    return ImageFiles(
        config=saved.config,
        manifest=saved.manifest,
        merged=merged,
        secrets=findings,
        foreign_layers=saved.foreign_layers(),
    )


# --- the checks --------------------------------------------------------------------------------


def _some(items: list[str], limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _readable(e: Entry) -> bool:
    need = 0o5 if e.kind == "dir" else 0o4
    if e.uid == _UID:
        return (e.mode >> 6) & need == need
    if e.gid == _GID:
        return (e.mode >> 3) & need == need
    return e.mode & need == need


def check_readable(files: ImageFiles) -> Check:
    bad = [
        f"{e.path} ({e.mode & 0o7777:04o}, owner {e.uid}:{e.gid})"
        for path, e in sorted(files.merged.items())
        if e.kind in ("file", "dir")
        and any(path == r or path.startswith(r + "/") for r in READABLE_ROOTS)
        and not _readable(e)
    ]
    if bad:
        message = (
            f"not readable by Lambda's non-root user {LAMBDA_USER}: {_some(bad)}; "
            "make them world-readable (chmod o+r files, o+rx directories)"
        )
        return Check(name="readable-files", ok=False, message=message)
    roots = [r for r in READABLE_ROOTS if r in files.merged]
    return Check(name="readable-files", ok=True, message=f"all readable under {', '.join(roots)}")


def check_entrypoint(files: ImageFiles) -> Check:
    name = "entrypoint"
    entrypoint = files.config.get("config", {}).get("Entrypoint") or []
    if not entrypoint:
        return Check(name=name, ok=False, message="the image has no ENTRYPOINT")
    path = entrypoint[0]
    if not path.startswith("/"):
        message = f"ENTRYPOINT {path!r} is not an absolute path; Lambda needs one (/…)"
        return Check(name=name, ok=False, message=message)
    e = files.merged.get(tree.absolute_name(path))
    if e is None:
        return Check(name=name, ok=False, message=f"ENTRYPOINT {path} does not exist in the image")
    if e.kind == "symlink":
        message = f"ENTRYPOINT {path} is a symlink to {e.linkname}; point ENTRYPOINT at the file"
        return Check(name=name, ok=False, message=message)
    if e.kind != "file":
        return Check(name=name, ok=False, message=f"ENTRYPOINT {path} is not a regular file")
    if e.mode & 0o005 != 0o005 and e.uid != _UID:
        message = (
            f"ENTRYPOINT {path} ({e.mode & 0o7777:04o}) cannot be run by Lambda's non-root user; "
            "chmod 0755 it"
        )
        return Check(name=name, ok=False, message=message)
    return Check(name=name, ok=True, message=f"{path} ({e.mode & 0o7777:04o}, regular file)")


def check_size(size: int, limit: int = MAX_UNCOMPRESSED) -> Check:
    if size > limit:
        message = (
            f"{log.human_size(size)} uncompressed, over Lambda's {log.human_size(limit)} limit "
            "(all layers together)"
        )
        return Check(name="size", ok=False, message=message)
    return Check(name="size", ok=True, message=f"{log.human_size(size)} uncompressed")


def check_architecture(files: ImageFiles, arch: Arch) -> Check:
    name = "architecture"
    config_arch = files.config.get("architecture", "")
    if config_arch != arch.docker:
        actual = config_arch or "of no architecture"
        message = f"the image is {actual}, the target is {arch.name} ({arch.docker})"
        return Check(name=name, ok=False, message=message)
    foreign = sorted(
        f"{e.path} ({e.elf})" for e in files.merged.values() if e.elf and e.elf != arch.docker
    )
    if foreign:
        message = (
            f"labelled {arch.docker} but holds ELF files for another architecture: "
            f"{_some(foreign, 3)}"
        )
        return Check(name=name, ok=False, message=message)
    elves = sum(1 for e in files.merged.values() if e.elf)
    return Check(name=name, ok=True, message=f"{arch.docker}, {elves} ELF files all {arch.docker}")


def check_manifest(files: ImageFiles) -> Check:
    """What ``docker push`` would send: a Docker v2 schema 2 manifest for one image config."""
    name = "manifest"
    problems = []
    config = files.config
    if config.get("os") != "linux":
        problems.append(f"config os is {config.get('os')!r}, Lambda runs linux images only")
    if not config.get("architecture"):
        problems.append("config names no architecture")
    rootfs = config.get("rootfs", {})
    diff_ids = rootfs.get("diff_ids") or []
    if rootfs.get("type") != "layers":
        problems.append(f"rootfs type is {rootfs.get('type')!r}, expected 'layers'")
    if not diff_ids:
        problems.append("the image has no layers")
    if len(diff_ids) != len(files.manifest.get("Layers", [])):
        problems.append("config diff_ids do not match the layers exported")
    if len(diff_ids) > MAX_LAYERS:
        problems.append(f"{len(diff_ids)} layers, more than {MAX_LAYERS}")
    if files.foreign_layers:
        problems.append(
            f"{len(files.foreign_layers)} foreign (non-distributable) layers, which registries "
            "and Lambda refuse"
        )
    if problems:
        return Check(name=name, ok=False, message="; ".join(problems))
    message = (
        f"docker v2 schema 2, linux/{config['architecture']}, {len(diff_ids)} tar layers "
        "(pushed gzip-compressed)"
    )
    return Check(name=name, ok=True, message=message)


def check_credentials(files: ImageFiles) -> Check:
    findings = list(files.secrets)
    for item in files.config.get("config", {}).get("Env") or []:
        key = item.split("=", 1)[0]
        if key in _SECRET_ENV:
            findings.append(f"{key} in the image's ENV")
    if findings:
        message = (
            f"credentials baked into the image: {_some(findings)}; remove them from every layer "
            "(rebuild without them: deleting in a later layer keeps them in the earlier one)"
        )
        return Check(name="no-credentials", ok=False, message=message)
    return Check(name="no-credentials", ok=True, message="no keys found in any layer or ENV")


@dataclass(frozen=True, kw_only=True)
class ProbeRun:
    result: InvokeResult
    echoed: bool  # the response is the event sent
    output: list[str]  # what the function printed
    changes: list[dict[str, Any]]  # filesystem changes (writable root only)


def _probe(
    image: str,
    probe: Path,
    handler: str,
    client: Any,
    *,
    read_only: bool,
    timeout: float,
    runtime_api_host: str = "",
) -> ProbeRun:
    """Invoke the probe once in a fresh environment with a unique event."""
    nonce = {"probe": "lambda-images", "nonce": uuid.uuid4().hex}
    payload = json.dumps(nonce).encode()
    config = FunctionConfig(
        image=image, handler=handler, code=probe, timeout=timeout, read_only=read_only
    )
    lines: list[str] = []
    with ExecutionEnvironment(
        config, client, sink=lines.append, runtime_api_host=runtime_api_host
    ) as environment:
        result = environment.invoke(payload)
    echoed = result.ok and _json(result.payload) == nonce
    return ProbeRun(result=result, echoed=echoed, output=lines, changes=environment.changes)


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def check_invocation(
    image: str,
    probe: Path,
    client: Any,
    timeout: float,
    handler: str = PROBE_HANDLER,
    runtime_api_host: str = "",
) -> Check:
    run = _probe(
        image, probe, handler, client, read_only=True, timeout=timeout,
        runtime_api_host=runtime_api_host,
    )  # fmt: skip
    result, lines = run.result, run.output
    if run.echoed:
        return Check(name="invocation", ok=True, message="the probe echoed its event back")
    if result.ok:
        got = result.payload[:200].decode(errors="replace")
        message = f"the probe answered {got!r} instead of echoing its event"
    else:
        message = f"the probe failed with {result.error_type}: {result.error_message()[:300]}"
    tail = " | ".join(line for line in lines[-3:] if line.strip())
    if tail:
        message += f" (function output: {tail[:300]})"
    return Check(name="invocation", ok=False, message=message)


def check_writes(
    image: str,
    probe: Path,
    client: Any,
    timeout: float,
    handler: str = PROBE_HANDLER,
    runtime_api_host: str = "",
) -> Check:
    name = "read-only-rootfs"
    run = _probe(
        image, probe, handler, client, read_only=False, timeout=timeout,
        runtime_api_host=runtime_api_host,
    )  # fmt: skip
    changed = sorted(
        {
            c["Path"]
            for c in run.changes
            if not (c["Path"] == "/tmp" or c["Path"].startswith("/tmp/"))
            and not any(c["Path"] == p or c["Path"].startswith(p + "/") for p in ENGINE_PATHS)
        }
    )
    # A changed directory is listed with the files changed in it; name only the deepest paths.
    leaves = [p for p in changed if not any(q.startswith(p + "/") for q in changed)]
    if leaves:
        message = (
            "writes outside /tmp, which Lambda's read-only root filesystem refuses: "
            f"{_some(leaves)}; write to /tmp instead"
        )
        return Check(name=name, ok=False, message=message)
    return Check(name=name, ok=True, message="an invocation wrote nothing outside /tmp")


@dataclass(frozen=True, kw_only=True)
class Subject:
    """What the checks look at: the image in the engine, its merged files, the probe."""

    client: Any
    image: str
    arch: Arch
    files: ImageFiles
    size: int
    max_size: int
    probe: Path  # ready to mount as the function code
    handler: str
    timeout: float
    runtime_api_host: str = ""  # Settings.runtime_api_host (emulator/network.py)


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One conformance check: its name, what it verifies (the docs' table), its function."""

    name: str
    verifies: str
    check: Callable[[Subject], Check]


CHECKS: Final = (
    Rule(
        name="invocation",
        verifies="a real invocation through the emulator, under Lambda's settings, returns the "
        "event the family's probe (`templates/<family>/probe/`) echoes back",
        check=lambda s: check_invocation(
            s.image, s.probe, s.client, s.timeout, s.handler, s.runtime_api_host
        ),
    ),
    Rule(
        name="read-only-rootfs",
        verifies="the same invocation, on a writable root filesystem as Lambda's user, leaves no "
        "change outside `/tmp` (`docker diff`); names the paths written",
        check=lambda s: check_writes(
            s.image, s.probe, s.client, s.timeout, s.handler, s.runtime_api_host
        ),
    ),
    Rule(
        name="readable-files",
        verifies="every file and directory under `/var/task`, `/var/runtime`, `/var/lang`, `/opt` "
        "is readable (directories searchable) by uid 993/gid 990",
        check=lambda s: check_readable(s.files),
    ),
    Rule(
        name="entrypoint",
        verifies="ENTRYPOINT is absolute, exists, is a regular file (not a symlink) and "
        "executable by others",
        check=lambda s: check_entrypoint(s.files),
    ),
    Rule(
        name="size",
        verifies="uncompressed size, all layers together, at most 10 GiB",
        check=lambda s: check_size(s.size, s.max_size),
    ),
    Rule(
        name="architecture",
        verifies="the config's architecture is the target's, and every ELF file in the image is "
        "for it too (catches arm64-labelled images carrying amd64 binaries)",
        check=lambda s: check_architecture(s.files, s.arch),
    ),
    Rule(
        name="manifest",
        verifies="what `docker push` sends for the image is a single Docker v2 schema 2 manifest "
        "that Lambda accepts: config with `os: linux`, an architecture, `rootfs.type: layers`, "
        "diff IDs matching the layers, at most 127 layers, no foreign (non-distributable) "
        "layers. It cannot see a registry: that Lambda must be given a single-arch tag or "
        "digest, never the multi-arch index, is the publish stage's business",
        check=lambda s: check_manifest(s.files),
    ),
    Rule(
        name="no-credentials",
        verifies="no AWS access key IDs, AWS secret access keys or PEM private keys in any file up "
        "to 4 MiB of any layer (files deleted in a later layer included), and no "
        "`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`/`AWS_ACCESS_KEY_ID` in the image's ENV. "
        "AWS's documented example keys (`…EXAMPLE…`) and the self-test keys compiled into ELF "
        "crypto libraries are not findings. Messages name file and layer, never the key",
        check=lambda s: check_credentials(s.files),
    ),
)


# Raise when a check's function changes what it finds without its name or text changing: every
# report made by the earlier checks then no longer counts (checks_digest), and the next build
# of any cell runs them again.
CHECKS_VERSION: Final = 1


def checks_digest() -> str:
    """What identifies the set of checks a report comes from: CHECKS_VERSION, and each check's
    name and what it verifies, in order."""
    rules = [[rule.name, rule.verifies] for rule in CHECKS]
    return sha256_json({"version": CHECKS_VERSION, "checks": rules})


def checks_table() -> str:
    """The docs' table of the checks (docs/emulator.md), from CHECKS."""
    rows = [f"| `{rule.name}` | {rule.verifies} |" for rule in CHECKS]
    return "\n".join(["| check | what it verifies |", "| --- | --- |", *rows]) + "\n"


def run_checks(
    client: Any,
    image: str,
    arch: Arch,
    probe: Path,
    *,
    handler: str = PROBE_HANDLER,
    timeout: float = 60.0,
    max_size: int = MAX_UNCOMPRESSED,
    runtime_api_host: str = "",
) -> Report:
    """Every check of CHECKS, in order, on one image; the probe directory (ready to run: see
    ``probes``) is mounted as the function code and invoked with ``handler``."""
    started = time.monotonic()
    if not probe.is_dir():
        msg = (
            f"{probe}: no probe function; every template family needs one there (a handler "
            "`probe.handler`, or a bootstrap, that returns the event it is given)"
        )
        raise ConfigurationError(msg)
    try:
        inspected = client.images.get(image)
        size, image_id = int(inspected.attrs.get("Size", 0)), str(inspected.id)
    except docker.errors.ImageNotFound:
        raise EngineError(f"no image {image!r} in the Docker Engine; build it first") from None
    files = read_image(client, image)
    with tempfile.TemporaryDirectory(prefix="lambda-probe-") as tmp:
        # The probe must be readable by Lambda's user whatever the checkout's umask was.
        subject = Subject(
            client=client, image=image, arch=arch, files=files, size=size, max_size=max_size,
            probe=copy_readable(probe, Path(tmp, "code")), handler=handler, timeout=timeout,
            runtime_api_host=runtime_api_host,
        )  # fmt: skip
        checks = tuple(rule.check(subject) for rule in CHECKS)
    return Report(
        image=image, arch=arch.name, checks=checks, seconds=round(time.monotonic() - started, 1),
        image_id=image_id, checks_digest=checks_digest(),
    )  # fmt: skip
