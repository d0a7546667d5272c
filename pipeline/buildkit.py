"""BuildKit builds through the Docker Engine API, for engines where BuildKit is the builder.

On Docker >= 23 the default builder is BuildKit, and only BuildKit honours ``--platform`` for
``FROM scratch`` images (the classic builder labels them with the host's architecture). The
``docker`` SDK can only drive the classic builder, but the Engine API itself can ask for BuildKit:
``POST /build?version=2`` (documented in the Engine API reference) with the build context as a
tar in the request body. Moby's builder accepts a context sent that way without a client session
(no gRPC session, no ``docker buildx``). The request goes through the public interface of the
SDK's ``APIClient`` (a ``requests.Session`` with ``base_url`` and ``api_version``), never its
private helpers: ``docker buildx`` is not on every machine that drives Docker >= 23 (not on this
project's CI hosts), and the Engine API endpoint is what the CLI itself uses.

What comes back differs from the classic builder's ``{"stream": …}`` lines:

* progress as ``{"id": "moby.buildkit.trace", "aux": "<base64>"}``, each a protobuf
  ``moby.buildkit.v1.StatusResponse`` (decoded here, see ``decode_status``);
* the image id as ``{"id": "moby.image.id", "aux": {"ID": "sha256:…"}}``;
* failures as ``{"errorDetail": {"message": …}, "error": …}``, as before.

``build_image`` turns that into the readable lines ``docker build --progress=plain`` prints
(``#3 [2/5] RUN …``, the step's output, ``#3 DONE 4.2s``) and returns the image id.
``engine_builder`` says which builder an engine should be driven with.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import docker.utils
from docker.utils.json_stream import json_stream

from .errors import EngineError

Builder = Literal["buildkit", "classic"]
# Docker 23.0 made BuildKit the default builder on Linux; its Engine API version is 1.42.
FIRST_BUILDKIT_DEFAULT = 23
FIRST_BUILDKIT_DEFAULT_API = (1, 42)
# RUN steps fetch OS packages from the distribution's mirror. Host networking reaches it on any
# engine, including one started without NAT for its bridge (scripts/engine26 runs with
# --iptables=false so as not to touch the first engine's rules). Settings.build_network
# (LAMBDA_IMAGES_BUILD_NETWORK) picks another mode, e.g. "default", the engine's bridge.
DEFAULT_BUILD_NETWORK = "host"
TRACE_ID = "moby.buildkit.trace"
IMAGE_ID = "moby.image.id"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class BuildKitError(EngineError):
    """A BuildKit build failed; ``message`` is the engine's own error text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def engine_builder(client: Any, preference: str = "") -> Builder:
    """``"buildkit"`` for Docker >= 23 (where BuildKit is the default), else ``"classic"``.

    ``preference`` (``Settings.builder``: ``"buildkit"`` or ``"classic"``) wins when given.
    """
    if preference in ("buildkit", "classic"):
        return "buildkit" if preference == "buildkit" else "classic"
    version = client.version()
    major = re.match(r"(\d+)\.", str(version.get("Version", "")))
    if major:
        return "buildkit" if int(major.group(1)) >= FIRST_BUILDKIT_DEFAULT else "classic"
    # Engines that do not say a release number (some distributions' builds) still say their API.
    api = re.match(r"(\d+)\.(\d+)", str(version.get("ApiVersion", "")))
    if api and (int(api.group(1)), int(api.group(2))) >= FIRST_BUILDKIT_DEFAULT_API:
        return "buildkit"
    return "classic"


# --- protobuf wire format ------------------------------------------------------------------------
# A hand-written reader for the few fields needed, so no generated code and no protobuf runtime.


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) for each field of a message: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == 0:  # varint
            value, pos = _varint(data, pos)
        elif wire_type == 1:  # 64-bit
            value, pos = data[pos : pos + 8], pos + 8
        elif wire_type == 2:  # length-delimited: strings, bytes, messages, packed fields
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire_type == 5:  # 32-bit
            value, pos = data[pos : pos + 4], pos + 4
        else:  # groups (3, 4) are not used by proto3 messages
            raise ValueError(f"unsupported wire type {wire_type}")
        if pos > len(data):
            raise ValueError("truncated field")
        yield number, value


def _text(value: int | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


def _seconds(value: int | bytes) -> float:
    """A google.protobuf.Timestamp (1: seconds, 2: nanos) as seconds since the epoch."""
    seconds = nanos = 0
    if isinstance(value, bytes):
        for number, part in _fields(value):
            if number == 1 and isinstance(part, int):
                seconds = part
            elif number == 2 and isinstance(part, int):
                nanos = part
    return seconds + nanos / 1e9


@dataclass
class Vertex:
    digest: str
    name: str = ""
    cached: bool = False
    started: float | None = None
    completed: float | None = None
    error: str = ""


@dataclass
class VertexLog:
    vertex: str
    stream: int  # 1 stdout, 2 stderr
    msg: bytes


@dataclass
class VertexWarning:
    vertex: str
    short: str


@dataclass
class Status:
    vertexes: list[Vertex] = field(default_factory=list)
    logs: list[VertexLog] = field(default_factory=list)
    warnings: list[VertexWarning] = field(default_factory=list)


def decode_status(data: bytes) -> Status:
    """Read a ``moby.buildkit.v1.StatusResponse`` (buildkit api/services/control/control.proto).

    Fields read: ``vertexes`` (1) → Vertex ``digest`` (1), ``name`` (3), ``cached`` (4),
    ``started`` (5), ``completed`` (6), ``error`` (7); ``logs`` (3) → VertexLog ``vertex`` (1),
    ``stream`` (3), ``msg`` (4); ``warnings`` (4) → VertexWarning ``vertex`` (1), ``short`` (3).
    ``statuses`` (2: pull and transfer progress counters) and all other fields are skipped.
    """
    status = Status()
    for number, value in _fields(data):
        if not isinstance(value, bytes):
            continue
        if number == 1:
            vertex = Vertex(digest="")
            for n, v in _fields(value):
                if n == 1:
                    vertex.digest = _text(v)
                elif n == 3:
                    vertex.name = _text(v)
                elif n == 4:
                    vertex.cached = bool(v)
                elif n == 5:
                    vertex.started = _seconds(v)
                elif n == 6:
                    vertex.completed = _seconds(v)
                elif n == 7:
                    vertex.error = _text(v)
            status.vertexes.append(vertex)
        elif number == 3:
            log = VertexLog(vertex="", stream=0, msg=b"")
            for n, v in _fields(value):
                if n == 1:
                    log.vertex = _text(v)
                elif n == 3 and isinstance(v, int):
                    log.stream = v
                elif n == 4 and isinstance(v, bytes):
                    log.msg = v
            status.logs.append(log)
        elif number == 4:
            warning = VertexWarning(vertex="", short="")
            for n, v in _fields(value):
                if n == 1:
                    warning.vertex = _text(v)
                elif n == 3:
                    warning.short = _text(v)
            status.warnings.append(warning)
    return status


class PlainProgress:
    """Turns StatusResponse updates into ``--progress=plain`` style lines.

    BuildKit resends a vertex each time it changes (started, then completed or cached), and log
    payloads arrive in arbitrary chunks, so vertices are numbered on first sight and each one's
    output is split into lines only once a newline arrives (or the vertex ends).
    """

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}
        self._announced: set[str] = set()
        self._finished: set[str] = set()
        self._started: dict[str, float] = {}
        self._partial: dict[str, str] = {}

    def _number(self, digest: str) -> int:
        return self._numbers.setdefault(digest, len(self._numbers) + 1)

    def _flush(self, digest: str) -> Iterator[str]:
        rest = self._partial.pop(digest, "")
        if rest.strip():
            yield f"#{self._number(digest)} {rest.rstrip()}"

    def update(self, status: Status) -> Iterator[str]:
        for vertex in status.vertexes:
            # The graph arrives up front, every vertex not yet started: name one when it starts
            # (or turns out cached), as `--progress=plain` does, so numbers follow the build.
            begun = vertex.started is not None or vertex.cached or bool(vertex.error)
            if not begun:
                continue
            number = self._number(vertex.digest)
            if vertex.digest not in self._announced and vertex.name:
                self._announced.add(vertex.digest)
                yield f"#{number} {vertex.name}"
            if vertex.started is not None:
                self._started.setdefault(vertex.digest, vertex.started)
            if vertex.digest in self._finished:
                continue
            if vertex.error:
                self._finished.add(vertex.digest)
                yield from self._flush(vertex.digest)
                yield f"#{number} ERROR: {vertex.error}"
            elif vertex.cached:
                self._finished.add(vertex.digest)
                yield f"#{number} CACHED"
            elif vertex.completed is not None:
                self._finished.add(vertex.digest)
                yield from self._flush(vertex.digest)
                began = self._started.get(vertex.digest, vertex.completed)
                yield f"#{number} DONE {max(vertex.completed - began, 0):.1f}s"
        for log in status.logs:
            number = self._number(log.vertex)
            text = self._partial.get(log.vertex, "") + ANSI_ESCAPE.sub(
                "", log.msg.decode("utf-8", "replace").replace("\r\n", "\n")
            )
            *lines, rest = text.split("\n")
            self._partial[log.vertex] = rest
            for line in lines:
                # Progress bars redraw with carriage returns; keep what the line ended as.
                line = line.rsplit("\r", 1)[-1]
                if line.strip():
                    yield f"#{number} {line.rstrip()}"
        for warning in status.warnings:
            yield f"WARNING: {warning.short}"

    def close(self) -> Iterator[str]:
        for digest in list(self._partial):
            yield from self._flush(digest)


def _dockerignore(context: Path) -> list[str] | None:
    """The context's .dockerignore patterns, read as the docker SDK reads them."""
    path = context / ".dockerignore"
    if not path.is_file():
        return None
    lines = (line.strip() for line in path.read_text("utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def build_image(
    client: Any,
    context: Path,
    *,
    tag: str,
    platform: str,
    labels: dict[str, str],
    dockerfile: str = "Dockerfile",
    nocache: bool = False,
    network_mode: str = DEFAULT_BUILD_NETWORK,
    pull: bool = False,
    buildargs: dict[str, str] | None = None,
) -> Generator[str, None, str]:
    """Build ``context`` with BuildKit; yields log lines, returns the image id (``sha256:…``).

    Raises BuildKitError when the engine reports an error (any ``errorDetail``), or when the
    stream ends without an image id.
    """
    api = client.api
    params: dict[str, Any] = {
        "version": "2",  # BuildKit; "1" is the classic builder
        "t": tag,
        "dockerfile": dockerfile,
        "platform": platform,
        "labels": json.dumps(labels),
        "nocache": nocache,
        "pull": pull,
        "networkmode": network_mode,
        "rm": True,
        "forcerm": True,
    }
    if buildargs:
        params["buildargs"] = json.dumps(buildargs)
    image_id = ""
    progress = PlainProgress()
    # Compressed on purpose: BuildKit decides whether the body is a tar or a bare Dockerfile by
    # parsing its first bytes, and a plain tar from Python's tarfile starts with a PAX header
    # (float mtimes) that this check does not get past; gzip's magic number it recognises.
    context_tar = docker.utils.tar(str(context), exclude=_dockerignore(context), gzip=True)
    with context_tar as body:
        # The documented endpoint, through the public interface of the SDK's APIClient: it is a
        # requests.Session bound to the engine (``base_url``, ``api_version``).
        response = api.post(
            f"{api.base_url}/v{api.api_version}/build",
            data=body,
            params=params,
            headers={"Content-Type": "application/x-tar"},
            stream=True,
            # BuildKit sends progress only when something changes, so a step that prints nothing
            # (a native build under qemu, its output sent to a file) leaves the stream silent for
            # longer than the client's read timeout (measured: > 600 s). The engine ends the
            # response when the build ends; the job's own time limit bounds a hung engine.
            timeout=None,
        )
        # Errors found before the build starts (bad parameter, unknown platform) come back as
        # a non-2xx status with a JSON body rather than as a stream.
        if response.status_code >= 400:
            try:
                message = response.json().get("message")
            except ValueError:
                message = None
            raise BuildKitError(str(message or f"HTTP {response.status_code} from POST /build"))
        for chunk in json_stream(response.iter_content(chunk_size=None, decode_unicode=False)):
            if not isinstance(chunk, dict):
                continue
            if "errorDetail" in chunk or "error" in chunk:
                yield from progress.close()
                detail = chunk.get("errorDetail") or {}
                message = detail.get("message") if isinstance(detail, dict) else None
                raise BuildKitError(str(message or chunk.get("error") or chunk))
            aux = chunk.get("aux")
            if chunk.get("id") == TRACE_ID and isinstance(aux, str):
                try:
                    status = decode_status(base64.b64decode(aux))
                except ValueError as exc:  # binascii.Error is a ValueError too
                    yield f"(unreadable BuildKit progress: {exc})"
                    continue
                yield from progress.update(status)
            elif chunk.get("id") == IMAGE_ID and isinstance(aux, dict):
                image_id = str(aux.get("ID", ""))
            elif isinstance(chunk.get("stream"), str):
                # Plain messages the engine itself adds (rare with BuildKit).
                for line in ANSI_ESCAPE.sub("", chunk["stream"]).splitlines():
                    if line.strip():
                        yield line
    yield from progress.close()
    if not image_id:
        raise BuildKitError("the engine ended the build without naming an image")
    return image_id


def build_stream(
    client: Any,
    *,
    path: str,
    tag: str,
    platform: str,
    labels: dict[str, str],
    dockerfile: str = "Dockerfile",
    nocache: bool = False,
    pull: bool = False,
    network_mode: str = DEFAULT_BUILD_NETWORK,
    decode: bool = True,
    rm: bool = True,
    forcerm: bool = True,
    buildargs: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """``build_image`` in the shapes ``client.api.build(..., decode=True)`` yields.

    ``{"stream": line}`` per log line, ``{"aux": {"ID": id}}`` at the end, and
    ``{"errorDetail": {"message": …}}`` instead of raising, so that code written for the classic
    builder's stream consumes a BuildKit build unchanged. ``decode``, ``rm`` and ``forcerm`` are
    accepted for that signature only: BuildKit never keeps intermediate containers.
    """
    del decode, rm, forcerm
    lines = build_image(
        client,
        Path(path),
        tag=tag,
        platform=platform,
        labels=labels,
        dockerfile=dockerfile,
        nocache=nocache,
        pull=pull,
        network_mode=network_mode,
        buildargs=buildargs,
    )
    try:
        while True:
            yield {"stream": next(lines) + "\n"}
    except StopIteration as done:
        yield {"aux": {"ID": done.value}}
    except BuildKitError as exc:
        yield {"error": exc.message, "errorDetail": {"message": exc.message}}
