"""BuildKit builds through the Docker Engine API, for engines where BuildKit is the builder.

On Docker >= 23 the default builder is BuildKit, and only BuildKit honours ``--platform`` for
``FROM scratch`` images (the classic builder labels them with the host's architecture). The
``docker`` SDK can only drive the classic builder, but the Engine API itself can ask for BuildKit:
``POST /build?version=2`` (documented in the Engine API reference) with the build context as a
tar in the request body. Moby's builder accepts a context sent that way without a client session
(no gRPC session, no ``docker buildx``). The request goes through the public interface of the
SDK's ``APIClient`` (a ``requests.Session`` with ``base_url`` and ``api_version``), never its
private helpers: ``docker buildx`` is not installed where the tests run (nor on every machine
that drives Docker >= 23), and the Engine API endpoint is what the docker CLI itself uses.

What comes back differs from the classic builder's ``{"stream": …}`` lines:

* progress as ``{"id": "moby.buildkit.trace", "aux": "<base64>"}``, each a protobuf
  ``moby.buildkit.v1.StatusResponse``, parsed by Google's protobuf runtime (the ``protobuf``
  package) from a description of the fields read, built in code with BuildKit's field numbers
  (``decode_status``): no generated code, no hand-written wire reader;
* the image id as ``{"id": "moby.image.id", "aux": {"ID": "sha256:…"}}``;
* failures as ``{"errorDetail": {"message": …}, "error": …}``, as before.

``build_image`` turns that into the readable lines ``docker build --progress=plain`` prints
(``#3 [2/5] RUN …``, the step's output, ``#3 DONE 4.2s``) and returns the image id.
``engine_builder`` says which builder an engine should be driven with.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import docker.utils
from docker.utils.json_stream import json_stream
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message,
    message_factory,
    timestamp_pb2,
)

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


# --- BuildKit's progress messages --------------------------------------------------------------
# The messages of ``moby.buildkit.v1`` that progress is read from (BuildKit's
# api/services/control/control.proto), described field by field for Google's protobuf runtime;
# only the fields read here are described, and the parser skips the others (``statuses``, 2: the
# pull and transfer counters; ``inputs``, timestamps of logs, levels of warnings) as unknown
# fields. Text fields are described as ``bytes``, their wire encoding: Go does not check that a
# string is UTF-8, and a vertex name that is not must not cost the whole update.

_TIMESTAMP: Final = ".google.protobuf.Timestamp"
_MESSAGES: Final[dict[str, list[tuple[str, int, str]]]] = {
    # message: [(field, number, type: a scalar or a message's full name; "*" marks repeated)]
    "StatusResponse": [
        ("vertexes", 1, "*.moby.buildkit.v1.Vertex"),
        ("logs", 3, "*.moby.buildkit.v1.VertexLog"),
        ("warnings", 4, "*.moby.buildkit.v1.VertexWarning"),
    ],
    "Vertex": [
        ("digest", 1, "bytes"),
        ("name", 3, "bytes"),
        ("cached", 4, "bool"),
        ("started", 5, _TIMESTAMP),
        ("completed", 6, _TIMESTAMP),
        ("error", 7, "bytes"),
    ],
    "VertexLog": [("vertex", 1, "bytes"), ("stream", 3, "int64"), ("msg", 4, "bytes")],
    "VertexWarning": [("vertex", 1, "bytes"), ("short", 3, "bytes")],
}
_SCALARS: Final = {
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
}


@functools.cache
def _status_response() -> Any:
    """The ``moby.buildkit.v1.StatusResponse`` message class, made once from ``_MESSAGES`` in a
    descriptor pool of its own (with google/protobuf/timestamp.proto, which it uses)."""
    Field = descriptor_pb2.FieldDescriptorProto
    timestamp = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(timestamp)
    control = descriptor_pb2.FileDescriptorProto(
        name="moby/buildkit/v1/status.proto",
        package="moby.buildkit.v1",
        syntax="proto3",
        dependency=[timestamp.name],
    )
    for name, fields in _MESSAGES.items():
        described = control.message_type.add(name=name)
        for field_name, number, kind in fields:
            repeated, kind = kind.startswith("*"), kind.removeprefix("*")
            entry = described.field.add(
                name=field_name,
                number=number,
                label=Field.LABEL_REPEATED if repeated else Field.LABEL_OPTIONAL,
            )
            if kind in _SCALARS:
                entry.type = _SCALARS[kind]
            else:
                entry.type, entry.type_name = Field.TYPE_MESSAGE, kind
    pool = descriptor_pool.DescriptorPool()
    pool.Add(timestamp)
    pool.Add(control)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("moby.buildkit.v1.StatusResponse")
    )


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _seconds(message: Any, name: str) -> float | None:
    """A google.protobuf.Timestamp field as seconds since the epoch; None when it is unset."""
    if not message.HasField(name):
        return None
    stamp = getattr(message, name)
    return float(stamp.seconds + stamp.nanos / 1e9)


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
    """Read one ``moby.buildkit.v1.StatusResponse``; ValueError when it is not one."""
    try:
        response = _status_response().FromString(data)
    except message.DecodeError as exc:
        raise ValueError(f"not a BuildKit StatusResponse: {exc}") from None
    return Status(
        vertexes=[
            Vertex(
                digest=_text(v.digest),
                name=_text(v.name),
                cached=bool(v.cached),
                started=_seconds(v, "started"),
                completed=_seconds(v, "completed"),
                error=_text(v.error),
            )
            for v in response.vertexes
        ],
        logs=[
            VertexLog(vertex=_text(x.vertex), stream=int(x.stream), msg=x.msg)
            for x in response.logs
        ],
        warnings=[
            VertexWarning(vertex=_text(w.vertex), short=_text(w.short)) for w in response.warnings
        ],
    )


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
