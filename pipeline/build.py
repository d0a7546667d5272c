"""Build: one single-architecture image per target, through the Docker Engine API.

The low-level ``APIClient.build`` is used so that the build log streams as it happens, and every
chunk is checked for an error (the high-level API hides both). The image is tagged
``<namespace>/<runtime>:<arch>`` and described by the cell's ``build.json`` record.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import docker.errors

from . import __version__, buildkit, log
from .digests import sha256_bytes, sha256_file
from .epoch import iso8601
from .errors import EngineError
from .lock import Lock
from .matrix import Target
from .pins import sdk_column
from .records import BuildRecord
from .settings import Settings
from .workdir import write_atomic

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def global_args(dockerfile: str) -> list[str]:
    """The names of a Dockerfile's ARGs before its first FROM (those FROM lines may use)."""
    names = []
    for line in dockerfile.splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM":
            break
        if len(words) >= 2 and words[0].upper() == "ARG":
            names.append(words[1].split("=", 1)[0])
    return names


# Beside a context: the sha256 of each of its files, with the stat it was read at.
CONTEXT_SHA256S: Final = "context.sha256.json"


def context_digest(context: Path) -> str:
    """sha256 over the context's paths, modes and contents: what the build can see.

    Files are those ``Path.rglob`` lists (symbolic links to files followed, folders linked to
    not entered), in path order. A file's bytes are hashed again only when its stat changed
    since the last digest of this context (``CONTEXT_SHA256S``): size, modification time,
    inode and change time, which every write moves and no program can set back.
    """
    memo_path = context.parent / CONTEXT_SHA256S
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        memo = memo if isinstance(memo, dict) else {}
    except (OSError, ValueError):
        memo = {}
    files = []
    for root, dirs, names in os.walk(context):  # os.walk does not enter linked folders either
        for name in dirs + names:
            path = os.path.join(root, name)
            if os.path.isfile(path):
                rel = os.path.relpath(path, context)
                files.append((tuple(rel.split(os.sep)), rel, path))
    files.sort()  # by path parts, as Path objects sort
    known: dict[str, list[Any]] = {}
    listing = []
    for _, rel, path in files:
        st = os.stat(path)
        stat = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
        before = memo.get(rel)
        if isinstance(before, list) and before[:4] == stat and len(before) == 5:
            sha = str(before[4])
        else:
            sha = sha256_file(Path(path))
        known[rel] = [*stat, sha]
        listing.append(f"{Path(rel).as_posix()}\0{st.st_mode & 0o777:o}\0{sha}")
    if known != memo:
        with contextlib.suppress(OSError):  # a folder that cannot be written: no memo
            write_atomic(memo_path, json.dumps(known).encode())
    return sha256_bytes("\n".join(listing).encode())


# The label naming the SDK an image carries (AWS's tables' SDK column), as the lock pins it.
SDK_LABEL = "lambda-base-images.sdk"


def image_labels(target: Target, settings: Settings, lock: Lock) -> dict[str, str]:
    """OCI annotations stamped on every image (source and revision come from the job); the
    SDK the image carries, as the lock pins it (pins.sdk_column), where it has one."""
    labels = {
        "org.opencontainers.image.created": iso8601(settings.epoch),
        "org.opencontainers.image.title": f"{target.runtime.name} ({target.runtime.id})",
        "org.opencontainers.image.version": target.runtime.tag,
        "org.opencontainers.image.vendor": "lambda-base-images",
        "com.amazonaws.lambda.runtime": target.runtime.id,
        "com.amazonaws.lambda.architecture": target.arch.name,
        "lambda-base-images.pipeline-version": __version__,
    }
    sdk = sdk_column(target.runtime, lock) or target.runtime.sdk
    if sdk:
        labels[SDK_LABEL] = sdk
    return {**labels, **settings.labels}


class StepLines:
    """BuildKit's plain progress (``#3 [2/5] RUN …``, the step's output as ``#3 …`` lines,
    ``#3 DONE 4.2s``) as one line per step, written when the step ends: its time (or
    ``cached``, or ``failed`` and why) and its name. The output itself goes to the build log."""

    _LINE: Final = re.compile(r"#(\d+) (.*)")

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def line(self, text: str) -> str | None:
        match = self._LINE.fullmatch(text)
        if match is None:
            return text  # the engine's own messages, warnings
        number, rest = match.groups()
        if number not in self._names:
            self._names[number] = rest
            return None
        name = self._names[number]
        if rest == "CACHED":
            return f"cached  {name}"
        if (done := re.fullmatch(r"DONE (\d+\.\d+)s", rest)) is not None:
            return f"{float(done[1]):6.1f}s {name}"
        if rest.startswith("ERROR: "):
            return f"failed  {name}: {rest.removeprefix('ERROR: ')}"
        return None


def build_target(
    target: Target,
    context: Path,
    client: Any,
    base_image_id: str,
    log_file: Path,
    *,
    labels: dict[str, str],
    no_cache: bool = False,
    builder: str = "",
    network_mode: str = buildkit.DEFAULT_BUILD_NETWORK,
    build_args: dict[str, str] | None = None,
    platform_check: bool = True,
) -> BuildRecord:
    """Build one target; the whole build output is kept in ``log_file``.

    ``no_cache`` reruns every step (a rebuild after a CVE must fetch the fixed packages).
    ``builder`` ("buildkit", "classic", "" for the engine's default) and ``network_mode`` (of
    BuildKit's RUN steps) come from Settings. ``build_args`` fill the Dockerfile's ARGs.
    ``platform_check`` False: a stage of the build runs on another platform than the target's.
    """
    started = time.monotonic()
    platform = f"linux/{target.arch.docker}"
    args = dict(build_args or {})
    # Docker >= 23 builds with BuildKit, which labels images with the platform asked for; the
    # classic builder (Docker 20.10) is driven through the SDK as before. Both streams look alike.
    start_build: Any = client.api.build
    options: dict[str, Any] = {"platform": platform}
    argv = ["docker", "build", "--platform", platform, "-t", target.image_tag, str(context)]
    shown: Callable[[str], str | None] = lambda line: line  # noqa: E731
    if buildkit.engine_builder(client, builder) == "buildkit":
        start_build = functools.partial(buildkit.build_stream, client, network_mode=network_mode)
        argv[2:2] = ["--network", network_mode]
        shown = StepLines().line
        log.detail(f"  one line per step; their output is in {log_file}")
    elif not platform_check:
        # The classic builder checks every stage against the requested platform, a stage meant
        # to run on the build machine too: `COPY --from=` such a stage fails with "image …
        # does not match the specified platform" (Docker 20.10). Without a platform it takes
        # each FROM as it is: the target's base is single-architecture, and the result's
        # architecture is checked below.
        options = {}
        argv[2:4] = []
    for name, value in sorted(args.items()):
        argv[-1:-1] = ["--build-arg", f"{name}={value}"]
    log.command(argv)
    tail: list[str] = []
    image_id = ""
    try:
        stream = start_build(
            path=str(context),
            dockerfile="Dockerfile",
            tag=target.image_tag,
            **options,
            buildargs=args,
            labels=labels,
            decode=True,
            rm=True,
            forcerm=True,
            pull=False,
            nocache=no_cache,
        )
        with log_file.open("w", encoding="utf-8") as full_log:
            for chunk in stream:
                if "error" in chunk or "errorDetail" in chunk:
                    message = chunk.get("errorDetail", {}).get("message") or chunk.get("error")
                    full_log.write(f"ERROR: {message}\n")
                    last = " | ".join(tail[-3:])
                    msg = f"building {target.key} failed: {message} (last output: {last}; "
                    raise EngineError(msg + f"whole log: {log_file})")
                text = ANSI_ESCAPE.sub("", chunk.get("stream", ""))
                full_log.write(text)
                for line in text.splitlines():
                    if line.strip():
                        if (step := shown(line)) is not None:
                            log.detail(f"  {step}")
                        tail = [*tail[-19:], line]
                aux = chunk.get("aux")
                if isinstance(aux, dict) and "ID" in aux:
                    image_id = aux["ID"]
    except docker.errors.APIError as exc:
        raise EngineError(f"building {target.key} failed: {exc.explanation or exc}") from None
    image = client.images.get(target.image_tag)
    if image_id and image.id != image_id:
        raise EngineError(f"{target.image_tag} does not point at the image just built")
    architecture = image.attrs.get("Architecture", "")
    if architecture != target.arch.docker:
        msg = f"{target.image_tag} was built as {architecture}, expected {target.arch.docker}"
        raise EngineError(msg)
    return BuildRecord(
        runtime=target.runtime.id,
        arch=target.arch.name,
        image=target.image_tag,
        image_id=image.id,
        architecture=architecture,
        size=int(image.attrs.get("Size", 0)),
        base_image_id=base_image_id,
        context_digest=context_digest(context),
        seconds=round(time.monotonic() - started, 2),
        log_tail=tail,
    )
