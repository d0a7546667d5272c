"""Inputs: pinned artifacts fetched on the host into a build context.

Python wheels are resolved for the target platform on the host (`pip download --platform …`),
hashed into the lock file by ``lambda-images lock``, and installed into the context with
``--require-hashes`` so a changed artifact is a hard error. npm packages are resolved by npm
and each tarball is hashed; url inputs (language archives, jars, gems) are hashed from the
download, and built inputs (AWS's runtime interface emulator) from the binary the Go toolchain
makes here (gobuild.py). Every download or build lands in a content-addressed cache and is
checked against the lock before it enters a context. RUN steps never need PyPI or the npm registry.

Package managers (the role ``package_manager``: pip's wheel, npm's release tarball) are url
inputs installed here, on the build machine, into ``context/package-manager/`` laid out as they
land in the image under the family's ``package_manager`` prefix, so that one COPY puts them in
place and no RUN step (under qemu, for arm64) installs them: a wheel as an installer lays it out
for the image's interpreter (``installer``, PyPA's), an npm package as ``npm install --global``
lays it out (``lib/node_modules/<name>``, its ``bin`` commands linked into ``bin/``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Final
from urllib.parse import urlsplit

import requests
from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile

from . import log, progress
from .digests import sha256_file, sha256_json
from .errors import ConfigurationError, InputError
from .gobuild import build_input
from .lock import Lock, LockedFile, LockedModule, LockedPackage
from .matrix import Input, Runtime, Target
from .workdir import atomic_file, flocked, write_atomic

SHA256 = re.compile(r"[0-9a-f]{64}")
PIP_PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}


def _pip_target_args(runtime: Runtime, arch: str) -> list[str]:
    py = runtime.version.replace(".", "")
    return [
        "--only-binary=:all:",
        f"--platform={PIP_PLATFORMS[arch]}",
        f"--python-version={runtime.version}",
        "--implementation=cp",
        f"--abi=cp{py}",
        "--disable-pip-version-check",
        "--no-input",
    ]


def _run_pip(argv: list[str], what: str) -> None:
    full = [sys.executable, "-m", "pip", *argv]
    log.command(full)
    proc = subprocess.run(full, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
        raise InputError(f"{what}: pip failed: {' '.join(lines[-3:]) or proc.returncode}")


def pip_download_args(runtime: Runtime, arch: str, dest: str) -> list[str]:
    """``pip download``'s arguments for a runtime's requirements (operands after ``--``)."""
    return [
        "download",
        "--quiet",
        "--dest",
        dest,
        *_pip_target_args(runtime, arch),
        "--",  # what follows are requirements, never options
        *runtime.install.pip,
    ]


def lock_pip(runtime: Runtime, arch: str) -> list[LockedFile]:
    """Resolve and download a runtime's pip requirements for one arch; hash what arrived."""
    with tempfile.TemporaryDirectory(prefix="lambda-images-lock-") as tmp:
        _run_pip(pip_download_args(runtime, arch, tmp), f"{runtime.id}/{arch}")
        files = []
        for wheel in sorted(Path(tmp).iterdir()):
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            files.append(LockedFile(filename=wheel.name, sha256=digest))
        return files


def fetch_pip(target: Target, lock: Lock, context: Path) -> Path | None:
    """Install a target's locked wheels into ``context/runtime``; None when it has none.
    A tree that pip installed from the same requirements and arguments, and that nothing has
    touched since (``INSTALLED``: its files' sizes, times and modes), is kept as it is: pip
    takes seconds even with nothing to download."""
    runtime = target.runtime
    dest = context / "runtime"
    stamp = context.parent / INSTALLED
    if not runtime.install.pip:
        if dest.exists():
            shutil.rmtree(dest)
        stamp.unlink(missing_ok=True)
        return None
    files = lock.pip_files(runtime.id, target.arch.name)
    requirements = context.parent / "requirements.lock.txt"
    text = "".join(f.requirement + "\n" for f in files)
    argv = [
        "install",
        "--quiet",
        "--no-deps",
        "--no-compile",
        "--require-hashes",
        f"--target={dest}",
        *_pip_target_args(runtime, target.arch.name),
        "-r",
        str(requirements),
    ]
    wanted = sha256_json({"requirements": text, "argv": argv})
    if _kept(dest, stamp, wanted):
        return dest
    stamp.unlink(missing_ok=True)
    if dest.exists():
        shutil.rmtree(dest)
    requirements.write_text(text, encoding="utf-8")
    _run_pip(argv, target.key)
    # pip leaves a bin/ of console scripts with the host's interpreter path: not wanted.
    shutil.rmtree(dest / "bin", ignore_errors=True)
    _stamp(dest, stamp, wanted)
    return dest


INSTALLED = "runtime.installed.json"  # beside the context: the context's digest leaves it out


def _kept(dest: Path, stamp: Path, wanted: str) -> bool:
    """True when ``dest`` was made from ``wanted`` (``_stamp``) and nothing touched it since."""
    if not dest.is_dir():
        return False
    try:
        made = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(made == {"wanted": wanted, "tree": tree_state(dest)})


def _stamp(dest: Path, stamp: Path, wanted: str) -> None:
    """Record that ``dest`` was just made from ``wanted`` (what ``_kept`` reads)."""
    write_atomic(stamp, json.dumps({"wanted": wanted, "tree": tree_state(dest)}).encode())


def tree_state(folder: Path) -> str:
    """A digest of every entry under ``folder`` by path, type, size, mode and modification
    time: what changes when anything in the tree is written, added or removed."""
    entries = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(dirs + names):
            path = os.path.join(root, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, folder)
            entries.append([rel, st.st_mode, st.st_size, st.st_mtime_ns])
    return sha256_json(entries)


def confined(folder: Path, relative: str, what: str) -> Path:
    """``folder / relative`` when it stays inside ``folder`` once resolved (no ``..``, no
    absolute path, no symbolic link out); a ConfigurationError naming ``what`` otherwise."""
    base = folder.resolve()
    path = (base / relative).resolve()
    if relative in ("", ".") or not path.is_relative_to(base) or path == base:
        msg = f"{what}: {relative!r} leads outside {folder}; expected a path inside it"
        raise ConfigurationError(msg)
    return path


def require_locked(target: Target, lock: Lock) -> None:
    """``Lock.require``: InputError when anything ``target`` downloads is unlocked."""
    lock.require(target)


# --- downloads pinned by sha256 (url inputs and npm tarballs) ------------------------------


def _cached(path: Path, expected: str) -> bool:
    """True when the cache holds ``path`` with the sha256 it is named by. A file that does not
    (damaged on disk, or written by something else) is removed, to be fetched or built again:
    the cache is never trusted on reuse, only on the hash."""
    if not path.is_file():
        return False
    if sha256_file(path) == expected:
        return True
    log.detail(f"  {path.name[:12]}… in the cache does not match its sha256; fetched again")
    path.unlink(missing_ok=True)
    return False


def download(url: str, expected: str | None, what: str, cache: Path) -> Path:
    """A file from ``url`` in the content-addressed ``cache``, checked against ``expected``.

    With ``expected`` None (locking), the file is fetched and kept under its own sha256. Any
    other value must be a sha256: an empty or malformed one (an unlocked entry) is refused
    before anything is fetched.
    """
    if expected is not None and not SHA256.fullmatch(expected):
        msg = f"{what}: {url} is unlocked (sha256 {expected!r}); refusing to download it unchecked"
        raise InputError(msg)
    if expected and _cached(cache / expected, expected):
        return cache / expected
    cache.mkdir(parents=True, exist_ok=True)
    log.command(["GET", url])
    digest = hashlib.sha256()
    with atomic_file(cache, ".download.") as pending:
        try:
            with requests.get(url, stream=True, timeout=60) as resp:
                if resp.status_code != 200:
                    raise InputError(f"{what}: GET {url} answered HTTP {resp.status_code}")
                length = resp.headers.get("Content-Length", "")
                total = int(length) if length.isascii() and length.isdigit() else None
                name = urlsplit(url).path.rsplit("/", 1)[-1][:60]  # no query: it may sign
                with progress.transfer(f"download {name}", total) as meter:
                    for chunk in resp.iter_content(1 << 16):
                        digest.update(chunk)
                        pending.stream.write(chunk)
                        meter.advance(len(chunk))
        except requests.RequestException as exc:
            raise InputError(f"{what}: cannot download {url}: {type(exc).__name__}") from None
        actual = digest.hexdigest()
        if expected and actual != expected:
            msg = f"{what}: {url} has sha256 {actual}, but the lock pins {expected}; refusing it"
            raise InputError(msg)
        pending.keep(cache / actual)
    return cache / actual


def lock_url_inputs(
    runtime: Runtime,
    lock: Lock,
    cache: Path,
    tried: set[str] | None = None,
    *,
    environ: Mapping[str, str],
) -> list[str]:
    """Fill the lock's checksums of a runtime's url inputs; returns those left unlocked.

    ``tried`` carries the URLs that already failed in this run, so that an input shared by many
    runtimes (the emulator) is not fetched again. ``environ`` (Settings.environ): what the go
    command of a built input runs with.
    """
    tried = set() if tried is None else tried
    unlocked = []
    for item in runtime.all_inputs():
        if item.build is not None:
            unlocked += lock_built_input(runtime, item, lock, cache, tried, environ)
            continue
        for arch in runtime.architectures:
            key = item.key(arch)
            known = item.declared_sha256(arch) or lock.inputs.get(item.name, {}).get(key)
            if known:
                lock.inputs.setdefault(item.name, {})[key] = known
                continue
            if item.url(arch) in tried:
                unlocked.append(f"{item.name}/{key}")
                continue
            tried.add(item.url(arch))
            try:
                path = download(item.url(arch), None, f"{runtime.id}/{arch}: {item.name}", cache)
                lock.inputs.setdefault(item.name, {})[key] = path.name
            except InputError as exc:
                log.warning(f"{exc}; left unlocked")
                lock.inputs.setdefault(item.name, {})[key] = None
                unlocked.append(f"{item.name}/{key}")
    return unlocked


def relock_input(
    item: Input, arches: Sequence[str], lock: Lock, cache: Path, *, environ: Mapping[str, str]
) -> None:
    """Pin an input afresh after its version moved (``lock --upgrade``): each architecture's
    file downloaded (or built) and hashed, the previous version's entries dropped. A file that
    cannot be fetched or built is an InputError: an upgrade is locked whole or not at all."""
    lock.inputs.pop(item.name, None)
    if item.build is not None:
        lock.go.pop(item.name, None)
    for arch in {item.key(arch): arch for arch in arches}.values():  # one file per key
        what = f"{item.name} {item.version}"
        if item.build is not None:
            path, module_sum = _build_into_cache(item, arch, None, None, cache, what, environ)
            lock.go[item.name] = LockedModule(
                module=item.build.module, version=item.version, sum=module_sum
            )
        else:
            path = download(item.url(arch), None, f"{what} ({arch})", cache)
        lock.inputs.setdefault(item.name, {})[item.key(arch)] = path.name


def lock_built_input(
    runtime: Runtime,
    item: Input,
    lock: Lock,
    cache: Path,
    tried: set[str],
    environ: Mapping[str, str],
) -> list[str]:
    """Build a Go input for each of the runtime's architectures and pin the module's go.sum
    hash and each binary's sha256; returns what was left unlocked."""
    assert item.build is not None
    locked = lock.go.get(item.name)
    if locked and (locked.module, locked.version) != (item.build.module, item.version):
        # Another version: its binaries are other files.
        del lock.go[item.name]
        lock.inputs.pop(item.name, None)
    unlocked = []
    for arch in runtime.architectures:
        key = item.key(arch)
        if lock.inputs.get(item.name, {}).get(key) and item.name in lock.go:
            continue
        source = f"{item.source(arch)} {arch}"
        if source in tried:
            unlocked.append(f"{item.name}/{key}")
            continue
        tried.add(source)
        try:
            path, module_sum = _build_into_cache(item, arch, None, None, cache, runtime.id, environ)
        except InputError as exc:
            log.warning(f"{exc}; left unlocked")
            lock.inputs.setdefault(item.name, {})[key] = None
            unlocked.append(f"{item.name}/{key}")
            continue
        lock.go[item.name] = LockedModule(
            module=item.build.module, version=item.version, sum=module_sum
        )
        lock.inputs.setdefault(item.name, {})[key] = path.name
    return unlocked


def _build_into_cache(
    item: Input,
    arch: str,
    expected: str | None,
    module_sum: str | None,
    cache: Path,
    what: str,
    environ: Mapping[str, str],
) -> tuple[Path, str]:
    """A built input in the content-addressed ``cache`` (built when not there yet), checked
    against ``expected``; returns its path and the module's go.sum hash. Two processes that
    need the same pinned binary at once build it once: the second waits for the first."""
    pinned = bool(expected and module_sum)
    if expected and module_sum and _cached(cache / expected, expected):
        return cache / expected, module_sum
    cache.mkdir(parents=True, exist_ok=True)
    held = (
        flocked(cache / f".{expected}.lock", f"the build of {item.name} for {arch}")
        if pinned
        else contextlib.nullcontext()
    )
    with held, tempfile.TemporaryDirectory(dir=cache, prefix=".build.") as tmp:
        if expected and module_sum and _cached(cache / expected, expected):  # made meanwhile
            return cache / expected, module_sum
        built = build_input(
            item,
            arch,
            Path(tmp) / item.filename(arch),
            module_sum=module_sum,
            what=f"{what}/{arch}: {item.name}",
            environ=environ,
        )
        if expected and built.sha256 != expected:
            msg = (
                f"{what}/{arch}: {item.name} built from {item.source(arch)} has sha256 "
                f"{built.sha256}, but the lock pins {expected}: another toolchain or module "
                "tree; refusing it"
            )
            raise InputError(msg)
        built.path.replace(cache / built.sha256)
    return cache / built.sha256, built.module_sum


def fetch_inputs(
    target: Target, lock: Lock, context: Path, cache: Path, *, environ: Mapping[str, str]
) -> Path | None:
    """Put a target's url inputs into ``context/inputs`` with their SHA256SUMS (built inputs
    built with ``environ``, Settings.environ, when the cache does not hold them); package
    managers are installed by ``fetch_package_managers`` instead."""
    runtime = target.runtime
    dest = context / "inputs"
    if dest.exists():
        shutil.rmtree(dest)
    items = [i for role, group in runtime.inputs if role not in HOST_INSTALLED for i in group]
    if not items:
        return None
    dest.mkdir(parents=True)
    sums = []
    for item in sorted(items, key=lambda i: i.filename(target.arch.name)):
        arch = target.arch.name
        filename = item.filename(arch)
        expected = item.declared_sha256(arch) or lock.input_sha256(
            runtime.id, arch, item.name, item.key(arch), filename
        )
        if item.build is not None:
            module = lock.go_module(runtime.id, item.name, item.build.module, item.version)
            cached, _ = _build_into_cache(
                item, arch, expected, module.sum, cache, runtime.id, environ
            )
        else:
            cached = download(item.url(arch), expected, f"{target.key}: {item.name}", cache)
        shutil.copyfile(cached, confined(dest, filename, f"{target.key}: {item.name}"))
        sums.append(f"{expected}  {filename}\n")
    (dest / "SHA256SUMS").write_text("".join(sums), encoding="utf-8")
    return dest


def npm_lock_argv(runtime: Runtime) -> list[str]:
    """The npm command that resolves a runtime's packages (operands after ``--``)."""
    return [
        "npm",
        "install",
        "--package-lock-only",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--omit=dev",
        "--",  # what follows are packages, never options
        *runtime.install.npm,
    ]


def lock_npm(runtime: Runtime, cache: Path) -> list[LockedPackage]:
    """Resolve a runtime's npm packages (npm's own resolver) and hash every tarball."""
    with tempfile.TemporaryDirectory(prefix="lambda-images-npm-") as tmp:
        folder = Path(tmp)
        manifest = {"name": "lambda-images-lock", "version": "0.0.0", "private": True}
        (folder / "package.json").write_text(json.dumps(manifest))
        argv = npm_lock_argv(runtime)
        log.command(argv)
        proc = subprocess.run(argv, cwd=folder, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = " ".join(proc.stderr.strip().splitlines()[-3:])
            raise InputError(f"{runtime.id}: npm could not resolve its packages: {tail}")
        resolved = json.loads((folder / "package-lock.json").read_text())["packages"]
    packages = []
    for path, entry in sorted(resolved.items()):
        if not path or entry.get("dev") or entry.get("link"):
            continue
        url = entry.get("resolved") or _registry_url(path, entry)
        tarball = download(url, None, f"{runtime.id}: {path}", cache)
        _check_integrity(tarball, entry.get("integrity", ""), url)
        packages.append(LockedPackage(path=path, url=url, sha256=tarball.name))
    return packages


NPM_REGISTRY = "https://registry.npmjs.org"


def _registry_url(path: str, entry: dict[str, str]) -> str:
    """The registry tarball URL of a package-lock entry (npm leaves it out in lock-only mode)."""
    name = entry.get("name") or path.rsplit("node_modules/", 1)[-1]
    basename = name.rsplit("/", 1)[-1]
    return f"{NPM_REGISTRY}/{name}/-/{basename}-{entry['version']}.tgz"


def _check_integrity(path: Path, integrity: str, url: str) -> None:
    """npm's own checksum (sha512, base64) must agree with what was downloaded."""
    algo, _, expected = integrity.partition("-")
    if algo not in ("sha512", "sha1"):
        return
    actual = base64.b64encode(hashlib.new(algo, path.read_bytes()).digest()).decode()
    if actual != expected:
        raise InputError(f"{url}: the download does not match npm's {algo} integrity")


def fetch_npm(target: Target, lock: Lock, context: Path, cache: Path) -> Path | None:
    """Unpack a runtime's locked npm tarballs into ``context/node_modules``: the tree the image
    gets, and the one its build stage compiles the client's addon in. What no function can use
    is never unpacked (``_left_out``): for the v3 SDK's clients that is ~330 MB of ~380 MB, in
    every context, build cache layer and image."""
    dest = context / "node_modules"
    if dest.exists():
        shutil.rmtree(dest)
    if not target.runtime.install.npm:
        return None
    for package in lock.npm_packages(target.runtime.id):
        name = package.path.removeprefix("node_modules/")
        where = confined(dest, name, package.path)
        tarball = download(package.url, package.sha256, f"{target.key}: {package.path}", cache)
        _unpack_package(tarball, where, fixtures=NPM_TEST_FIXTURES.get(name, ()))
    return dest


# Test fixtures of build-time packages, by package: never needed at run time, and these carry
# private keys that the conformance check (no-credentials) rightly refuses. node-gyp is a
# build-time dependency of aws-lambda-ric that npm installs with it.
NPM_TEST_FIXTURES = {"node-gyp": ("test",)}


# What the AWS SDK's packages (@aws-sdk/*, @smithy/*) ship besides the CommonJS build that Node
# loads: TypeScript declarations and an ES-module build that only bundlers read ("module").
BUILD_ONLY_OUTPUTS = ("dist-types", "dist-es")


def _left_out(manifest: dict[str, Any], fixtures: Sequence[str]) -> frozenset[str]:
    """A package's top folders that are not unpacked: its test fixtures, and its declarations
    and bundler-only build when Node can never load them (``main`` is in ``dist-cjs/`` and no
    ``exports`` map could name them)."""
    main = str(manifest.get("main", "")).removeprefix("./")
    if "exports" in manifest or not main.startswith("dist-cjs/"):
        return frozenset(fixtures)
    return frozenset((*fixtures, *BUILD_ONLY_OUTPUTS))


def _manifest(tar: tarfile.TarFile, members: list[tarfile.TarInfo]) -> dict[str, Any]:
    """The package's own package.json (``package/package.json``); {} when absent or unreadable."""
    for member in members:
        if PurePosixPath(member.name).parts[1:] == ("package.json",):
            source = tar.extractfile(member)
            try:
                loaded = json.loads(source.read()) if source else {}
            except ValueError:
                return {}
            return loaded if isinstance(loaded, dict) else {}
    return {}


def _unpack_package(tarball: Path, dest: Path, *, fixtures: Sequence[str] = ()) -> None:
    """An npm tarball's files (below its one top folder) into ``dest``, modes normalized,
    without the folders ``_left_out`` names."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        left_out = _left_out(_manifest(tar, members), fixtures)
        for member in members:
            parts = PurePosixPath(member.name).parts[1:]
            if not parts or ".." in parts or parts[0] in left_out:
                continue
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            if source is None:
                continue
            target.write_bytes(source.read())
            target.chmod(0o755 if member.mode & 0o111 else 0o644)


# --- package managers, installed on the build machine ----------------------------------------

# Roles whose inputs are installed here into the context rather than staged by the Dockerfile.
HOST_INSTALLED: Final = frozenset({"package_manager"})
PACKAGE_MANAGER: Final = "package_manager"
PACKAGE_MANAGER_DIR: Final = "package-manager"
# Beside the context (so not in its digest): what the package-manager tree was made from.
PACKAGE_MANAGER_INSTALLED: Final = "package-manager.installed.json"
# How _install_wheel and _install_npm_package lay packages out: raise it when that changes, so
# that trees laid out before are made again.
PACKAGE_MANAGER_LAYOUT: Final = 1


def fetch_package_managers(target: Target, lock: Lock, context: Path, cache: Path) -> Path | None:
    """Install a target's package managers (role ``package_manager``) into
    ``context/package-manager/``, laid out as in the image under the family's prefix (its
    ``destinations.package_manager``); None when it has none."""
    runtime, arch = target.runtime, target.arch.name
    dest = context / PACKAGE_MANAGER_DIR
    stamp = context.parent / PACKAGE_MANAGER_INSTALLED
    items = dict(runtime.inputs).get(PACKAGE_MANAGER, ())
    if not items:
        if dest.exists():
            shutil.rmtree(dest)
        stamp.unlink(missing_ok=True)
        return None
    prefix = dict(runtime.family.destinations).get(PACKAGE_MANAGER)
    if prefix is None:
        msg = (
            f"{target.key}: family {runtime.family.id} has no destinations.{PACKAGE_MANAGER} "
            "in runtimes.yaml; expected the prefix its package manager is installed under"
        )
        raise ConfigurationError(msg)
    pinned = [
        (
            item,
            item.filename(arch),
            item.declared_sha256(arch)
            or lock.input_sha256(runtime.id, arch, item.name, item.key(arch), item.filename(arch)),
        )
        for item in items
    ]
    # A tree laid out from the same pinned files the same way, untouched since (as fetch_pip).
    wanted = sha256_json(
        {
            "layout": PACKAGE_MANAGER_LAYOUT,
            "prefix": prefix,
            "version": runtime.version,
            "files": [[filename, expected] for _, filename, expected in pinned],
        }
    )
    if _kept(dest, stamp, wanted):
        return dest
    stamp.unlink(missing_ok=True)
    if dest.exists():
        shutil.rmtree(dest)
    for item, filename, expected in pinned:
        cached = download(item.url(arch), expected, f"{target.key}: {item.name}", cache)
        if filename.endswith(".whl"):
            _install_wheel(cached, filename, dest, prefix, runtime.version)
        elif filename.endswith(".tgz"):
            _install_npm_package(cached, dest, prefix)
        else:
            msg = (
                f"{target.key}: input {item.name!r} ({filename}) is no wheel (.whl) or npm "
                f"package (.tgz); expected one of those as a {PACKAGE_MANAGER}"
            )
            raise ConfigurationError(msg)
    _stamp(dest, stamp, wanted)
    return dest


def python_scheme(prefix: str, version: str) -> dict[str, str]:
    """Where a wheel's files go for Debian's ``pythonX.Y`` under ``prefix`` (/usr/local):
    Debian's own scheme for that prefix (``posix_local``, ``dist-packages``), which is where a
    plain ``pip install`` run as root installs, and a folder on the interpreter's sys.path."""
    site = f"{prefix}/lib/python{version}/dist-packages"
    return {
        "purelib": site,
        "platlib": site,
        "scripts": f"{prefix}/bin",
        "data": prefix,
        "headers": f"{prefix}/include/python{version}",
    }


def _install_wheel(wheel: Path, filename: str, root: Path, prefix: str, version: str) -> None:
    """Install ``wheel`` under ``root`` as it lands in the image: its files in
    ``python_scheme``, its console scripts written for ``/usr/bin/pythonX.Y``, no bytecode."""
    with tempfile.TemporaryDirectory(prefix="lambda-images-wheel-") as tmp:
        # The wheel's name says what it is (the cache names files by their sha256).
        named = Path(tmp) / filename
        shutil.copyfile(wheel, named)
        destination = SchemeDictionaryDestination(
            python_scheme(prefix, version),
            interpreter=f"/usr/bin/python{version}",
            script_kind="posix",
            destdir=str(root),
        )
        with WheelFile.open(named) as source:
            install(source, destination, {"INSTALLER": b"lambda-images\n"})
    _readable(root)


def _install_npm_package(tarball: Path, root: Path, prefix: str) -> None:
    """Lay out an npm package as ``npm install --global`` does under ``prefix``: its files in
    ``lib/node_modules/<name>/`` (dependencies bundled in the tarball included), each command
    of its ``bin`` a relative symbolic link in ``bin/``."""
    with tarfile.open(tarball, "r:gz") as tar:
        manifest = _manifest(tar, [m for m in tar.getmembers() if m.isfile()])
    name = str(manifest.get("name", ""))
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise InputError(f"{tarball.name}: not an npm package with a plain name ({name!r})")
    top = PurePosixPath(prefix.lstrip("/"))
    package = top / "lib" / "node_modules" / name
    _unpack_package(tarball, root / package)
    bins = manifest.get("bin", {})
    bins = {name: bins} if isinstance(bins, str) else bins
    for command, script in sorted(bins.items()):
        target = confined(root / package, str(script), f"{name}: bin.{command}")
        link = confined(root / top / "bin", command, f"{name}: bin.{command}")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(target, link.parent))
        target.chmod(0o755)
    _readable(root)


def _readable(root: Path) -> None:
    """Every folder and file under ``root`` readable by Lambda's user; executables stay so."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)
