"""BuildKit progress decoding, builder choice, empty layers (no engine needed)."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest

from pipeline import buildkit
from pipeline.errors import ConfigurationError
from pipeline.oci.layers import is_empty_layer
from pipeline.settings import Settings


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _timestamp(seconds: int, nanos: int = 0) -> bytes:
    return _field(1, seconds) + _field(2, nanos)


def _vertex(digest: str, name: str, **extra: Any) -> bytes:
    body = _field(1, digest) + _field(2, "sha256:input") + _field(3, name)
    if extra.get("cached"):
        body += _field(4, 1)
    if "started" in extra:
        body += _field(5, _timestamp(extra["started"]))
    if "completed" in extra:
        body += _field(6, _timestamp(extra["completed"], 500_000_000))
    if "error" in extra:
        body += _field(7, extra["error"])
    return _field(1, body)


def _log(digest: str, msg: bytes) -> bytes:
    return _field(3, _field(1, digest) + _field(2, _timestamp(1)) + _field(3, 1) + _field(4, msg))


def test_decode_status_reads_vertices_logs_and_warnings() -> None:
    status = (
        _vertex("sha256:a", "[1/2] RUN make", started=100, completed=102)
        + _field(2, _field(1, "extract") + _field(4, 5) + _field(5, 10))  # skipped: statuses
        + _log("sha256:a", b"hello\n")
        + _field(4, _field(1, "sha256:a") + _field(2, 1) + _field(3, "LegacyKeyValueFormat"))
    )
    decoded = buildkit.decode_status(status)
    assert [(v.digest, v.name, v.started, v.completed) for v in decoded.vertexes] == [
        ("sha256:a", "[1/2] RUN make", 100.0, 102.5)
    ]
    assert [(log.vertex, log.stream, log.msg) for log in decoded.logs] == [
        ("sha256:a", 1, b"hello\n")
    ]
    assert [w.short for w in decoded.warnings] == ["LegacyKeyValueFormat"]


def test_decode_status_refuses_truncated_data() -> None:
    with pytest.raises(ValueError):
        buildkit.decode_status(_field(3, b"abcdef")[:-2])


def test_plain_progress_numbers_vertices_as_they_start_and_joins_partial_lines() -> None:
    progress = buildkit.PlainProgress()
    lines: list[str] = []
    updates = [
        _vertex("sha256:b", "[2/2] COPY x /x") + _vertex("sha256:a", "[1/2] RUN make"),
        _vertex("sha256:a", "[1/2] RUN make", started=10),
        _log("sha256:a", b"first li") + _log("sha256:a", b"ne\nprogress 10%\rprogress 100%\nta"),
        _vertex("sha256:a", "[1/2] RUN make", started=10, completed=12),
        _vertex("sha256:b", "[2/2] COPY x /x", cached=True, started=12, completed=12),
    ]
    for update in updates:
        lines += progress.update(buildkit.decode_status(update))
    lines += progress.close()
    assert lines == [
        "#1 [1/2] RUN make",
        "#1 first line",
        "#1 progress 100%",
        "#1 ta",
        "#1 DONE 2.5s",
        "#2 [2/2] COPY x /x",
        "#2 CACHED",
    ]


def test_plain_progress_reports_a_failed_vertex() -> None:
    progress = buildkit.PlainProgress()
    status = _vertex("sha256:a", "RUN false", started=1, error="exit code: 1")
    assert list(progress.update(buildkit.decode_status(status))) == [
        "#1 RUN false",
        "#1 ERROR: exit code: 1",
    ]


class _Client:
    def __init__(self, version: dict[str, str]) -> None:
        self._version = version

    def version(self) -> dict[str, str]:
        return self._version


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ({"Version": "20.10.24+dfsg1", "ApiVersion": "1.41"}, "classic"),
        ({"Version": "26.1.5+dfsg1", "ApiVersion": "1.45"}, "buildkit"),
        ({"Version": "23.0.0", "ApiVersion": "1.42"}, "buildkit"),
        ({"Version": "dev", "ApiVersion": "1.47"}, "buildkit"),
        ({"Version": "dev", "ApiVersion": "1.41"}, "classic"),
    ],
)
def test_engine_builder_follows_the_engine_version(version: dict[str, str], expected: str) -> None:
    assert buildkit.engine_builder(_Client(version)) == expected


def test_engine_builder_preference_wins() -> None:
    assert buildkit.engine_builder(_Client({"Version": "26.1.5"}), "classic") == "classic"
    assert buildkit.engine_builder(_Client({"Version": "20.10.24"}), "buildkit") == "buildkit"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ""),
        ({"DOCKER_BUILDKIT": "0"}, "classic"),
        ({"DOCKER_BUILDKIT": "1"}, "buildkit"),
        ({"DOCKER_BUILDKIT": "0", "LAMBDA_IMAGES_BUILDER": "BuildKit"}, "buildkit"),
    ],
)
def test_settings_builder(environ: dict[str, str], expected: str) -> None:
    assert Settings.from_environ(environ).builder == expected


def test_settings_refuse_an_unknown_builder() -> None:
    with pytest.raises(ConfigurationError, match="LAMBDA_IMAGES_BUILDER"):
        Settings.from_environ({"LAMBDA_IMAGES_BUILDER": "kaniko"})


def test_is_empty_layer(tmp_path: Path) -> None:
    empty, full = tmp_path / "empty.tar", tmp_path / "full.tar"
    with tarfile.open(empty, "w"):
        pass
    with tarfile.open(full, "w") as tar:
        tar.addfile(tarfile.TarInfo("var/task/"))
    assert is_empty_layer(empty)
    assert not is_empty_layer(full)


def test_a_vertex_name_that_is_not_utf8_keeps_the_rest_of_the_update() -> None:
    """Go does not check that a string is UTF-8: such a name shows replacement characters."""
    vertex = _field(1, "sha256:a") + _field(3, b"RUN echo caf\xe9") + _field(5, _timestamp(1))
    decoded = buildkit.decode_status(_field(1, vertex) + _log("sha256:a", b"ok\n"))
    assert [v.name for v in decoded.vertexes] == ["RUN echo caf\ufffd"]
    assert [log.msg for log in decoded.logs] == [b"ok\n"]


def test_a_buildkit_build_shows_one_line_per_step_when_it_ends() -> None:
    """The console gets a line per step (its time, cached, or failed and why); the step's
    own output lines, and the step's first line, go to the build log only."""
    from pipeline.build import StepLines

    plain = [
        "#1 [internal] load build definition from Dockerfile",
        "#1 transferring dockerfile: 2.10kB done",
        "#1 DONE 0.0s",
        "#2 [1/3] FROM lambda-images/base-debian12:x86_64",
        "#3 [2/3] RUN apt-get install -y python3",
        "#2 CACHED",
        "#3 0.512 Get:1 http://deb.debian.org/debian bookworm/main amd64 python3 [26 kB]",
        "#3 DONE 12.3s",
        "WARNING: the base image has no healthcheck",
        "#4 [3/3] RUN false",
        '#4 ERROR: process "/bin/sh -c false" did not complete successfully: exit code: 1',
    ]
    steps = StepLines()
    shown = [line for line in map(steps.line, plain) if line is not None]
    assert shown == [
        "   0.0s [internal] load build definition from Dockerfile",
        "cached  [1/3] FROM lambda-images/base-debian12:x86_64",
        "  12.3s [2/3] RUN apt-get install -y python3",
        "WARNING: the base image has no healthcheck",
        'failed  [3/3] RUN false: process "/bin/sh -c false" did not complete successfully: '
        "exit code: 1",
    ]
