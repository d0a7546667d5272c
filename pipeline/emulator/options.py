"""The function's settings a user gives the emulator, as AWS's emulator and ``sam local`` take
them: environment variables (``--env``, ``--env-file``), layers (``--layer``) and the function's
name (``--function-name``). Checked here, before any container starts.

Layers are merged the way Lambda extracts them: into one ``/opt``, in the order given, a later
layer's file replacing an earlier one's (https://docs.aws.amazon.com/lambda/latest/dg/chapter-layers.html).
The merged copy is mounted read-only; it replaces the image's own ``/opt``, as ``/opt`` on
Lambda holds the layers and nothing else.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

from ..errors import ConfigurationError, UsageError

# Lambda's rules for a variable's key and a function's name (CreateFunction's API reference);
# matched whole (fullmatch: a "$" would let a trailing newline through).
_ENV_KEY: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]+")
_FUNCTION_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_ENV_FILE: Final = 1024 * 1024  # read no further: Lambda's variables total at most 4 KB

# Variables the emulator itself sets for the function: a user's value would break it or
# contradict another option. Credentials, AWS_REGION and the rest may be set, as with `docker run`.
RESERVED: Final = {
    "_HANDLER": "--handler",
    "AWS_LAMBDA_RUNTIME_API": None,
    "AWS_LAMBDA_FUNCTION_NAME": "--function-name",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "--memory",
    "AWS_EXECUTION_ENV": None,
    "LAMBDA_TASK_ROOT": None,
    "LAMBDA_RUNTIME_DIR": None,
}


_NONE: Mapping[str, str] = MappingProxyType({})


def _check_key(key: str, where: str) -> None:
    """A key Lambda accepts and the emulator does not set itself (values never appear here:
    they may be secrets)."""
    if key in RESERVED:
        option = RESERVED[key]
        instead = f"; use {option}" if option else ""
        raise UsageError(f"{where}: {key} is set by the emulator{instead}")
    if not _ENV_KEY.fullmatch(key):
        msg = (
            f"{where}: {key!r} is not a variable name Lambda accepts "
            "(a letter, then letters, digits or underscores; at least two characters)"
        )
        raise UsageError(msg)


def _pair(item: str, where: str, environ: Mapping[str, str]) -> tuple[str, str]:
    """``KEY=VALUE`` (the value is everything after the first ``=``), or ``KEY`` alone for the
    value this process has, as ``docker run --env KEY`` takes it. The item is never echoed
    unless it is a plain key: a mistyped one could be a secret."""
    key, sep, value = item.partition("=")
    if not sep:
        if not _ENV_KEY.fullmatch(item):
            raise UsageError(f"{where}: expected KEY=VALUE, or KEY to pass this shell's value")
        if item not in environ:
            raise UsageError(f"{where}: {item} has no '=VALUE' and is not set here to pass on")
        value = environ[item]
    _check_key(key, where)
    return key, value


def read_env_file(path: Path, environ: Mapping[str, str] = _NONE) -> dict[str, str]:
    """``--env-file``: ``KEY=VALUE`` lines as ``docker run --env-file`` reads them (the value is
    everything after the first ``=``, unquoted; ``KEY`` alone passes this process's value);
    blank lines and ``#`` comments are skipped."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_ENV_FILE + 1)
    except OSError as exc:
        raise UsageError(f"--env-file {path}: cannot read it: {exc.strerror}") from None
    if len(raw) > MAX_ENV_FILE:
        msg = (
            f"--env-file {path}: larger than {MAX_ENV_FILE // 1024} KiB; a function's variables "
            "total at most 4 KB on Lambda"
        )
        raise UsageError(msg)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path}: not UTF-8 text") from None
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            key, value = _pair(line, f"{path}:{number}", environ)
        except UsageError as exc:
            raise ConfigurationError(str(exc)) from None
        env[key] = value
    return env


def function_environment(
    pairs: Iterable[str], env_file: Path | None = None, environ: Mapping[str, str] = _NONE
) -> dict[str, str]:
    """The function's variables: the ``--env-file``'s, then each ``--env`` (``KEY=VALUE``, the
    value may hold ``=``), a later one replacing an earlier one. A bare ``KEY`` takes its value
    from ``environ`` (Settings.environ: this process's environment)."""
    env = read_env_file(env_file, environ) if env_file is not None else {}
    for number, item in enumerate(pairs, start=1):
        key, value = _pair(item, f"--env (#{number})", environ)
        env[key] = value
    return env


def check_function_name(name: str) -> str:
    if not _FUNCTION_NAME.fullmatch(name):
        msg = (
            f"--function-name {name!r}: Lambda's function names are 1 to 64 letters, digits, "
            "hyphens or underscores"
        )
        raise UsageError(msg)
    return name


def merge_layers(layers: Iterable[Path]) -> Path:
    """A new folder holding the layers merged in order (a later file replaces an earlier one),
    readable by Lambda's non-root user; the caller removes it.

    Nothing is written through a symbolic link: a later layer's file replaces an earlier
    layer's link (not the file it points to), and an entry whose folder is a link leading out
    of the merged folder is refused, as is anything but files, folders and links (a FIFO would
    block the copy)."""
    merged = Path(tempfile.mkdtemp(prefix="lambda-images-opt-"))
    try:
        for layer in layers:
            if not layer.is_dir():
                raise UsageError(f"--layer {layer}: not a directory")
            try:
                _merge(layer, merged)
            except OSError as exc:
                msg = f"--layer {layer}: cannot merge it over the layers before it: {exc}"
                raise UsageError(msg) from None
        _readable(merged)
    except BaseException:
        shutil.rmtree(merged, ignore_errors=True)
        raise
    return merged


def _merge(layer: Path, merged: Path) -> None:
    """Copy ``layer`` over ``merged``, links as links, never following one (see merge_layers)."""
    root = Path(os.path.realpath(merged))
    for folder, dirs, files in os.walk(layer):  # a link to a folder is listed, not entered
        rel = Path(folder).relative_to(layer)
        for name in sorted([*dirs, *files]):
            src, dest = Path(folder, name), merged / rel / name
            where = f"--layer {layer}: {(rel / name).as_posix()}"
            if not Path(os.path.realpath(dest.parent)).is_relative_to(root):
                msg = (
                    f"{where}: its folder is a symbolic link of an earlier layer leading out of "
                    "/opt; refused (nothing is written through it)"
                )
                raise UsageError(msg)
            mode = src.lstat().st_mode
            if stat.S_ISDIR(mode):
                _merge_folder(dest, root, where)
            elif stat.S_ISLNK(mode) or stat.S_ISREG(mode):
                if dest.is_dir() and not dest.is_symlink():
                    raise UsageError(f"{where}: a folder in an earlier layer; refused")
                dest.unlink(missing_ok=True)  # a link of an earlier layer is replaced, not followed
                if stat.S_ISLNK(mode):
                    os.symlink(os.readlink(src), dest)
                else:
                    shutil.copy2(src, dest, follow_symlinks=False)
            else:
                raise UsageError(f"{where}: not a file, a folder or a symbolic link; refused")


def _merge_folder(dest: Path, root: Path, where: str) -> None:
    """The folder ``dest`` of the merged tree: made, or an earlier layer's, or an earlier layer's
    link to a folder inside the merged tree (which the entries below then go into)."""
    if dest.is_symlink():
        target = Path(os.path.realpath(dest))
        if not (target.is_relative_to(root) and target.is_dir()):
            msg = (
                f"{where}: a symbolic link in an earlier layer that leads out of /opt (or to no "
                "folder); refused (nothing is written through it)"
            )
            raise UsageError(msg)
        return
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{where}: a file in an earlier layer and a folder in this one; refused")
    dest.mkdir(exist_ok=True)


def _readable(root: Path) -> None:
    """Folders a+rx, files a+r (a+x when their owner may run them): the function runs as a
    non-root user, as on Lambda."""
    root.chmod(0o755)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            path = Path(folder, name)
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o555)
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                mode = path.stat().st_mode
                path.chmod(mode | 0o444 | (0o111 if mode & 0o100 else 0))
