"""The emulator's HTTP input: a body is judged by its Content-Length before a byte of it is read
(400 when the header is missing or not a length, 413 when it is over Lambda's 6 MB), a client
that stalls is dropped, and ``--timeout`` is a finite number of seconds in (0, 900]."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cli_runner import lambda_images

from pipeline.emulator import RUNTIME_PREFIX, Invocation, RuntimeAPIServer, RuntimeState
from pipeline.emulator.http_json import JSONHandler
from pipeline.emulator.invoke import INVOKE_PATH, InvokeServer

GUARD = 30.0  # seconds a test waits for a reply at most: a hang fails instead of blocking

BAD_LENGTHS = [
    ("Content-Length: -1\r\n", 400),
    ("Content-Length: abc\r\n", 400),
    ("Content-Length: 1e3\r\n", 400),
    ("", 400),  # no Content-Length at all
    ("Transfer-Encoding: chunked\r\n", 400),
    (f"Content-Length: {10**13}\r\n", 413),
    (f"Content-Length: {6 * 1024 * 1024 + 1}\r\n", 413),
]


def exchange(address: str, request: bytes) -> tuple[int, bytes]:
    """Send raw bytes; read until the server closes the connection: (status, body)."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=GUARD) as conn:
        conn.sendall(request)
        chunks = []
        while data := conn.recv(65536):
            chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


class RecordingEnvironment:
    """Stands in for the execution environment (a container) behind the invoke endpoint; the
    requests below must be refused before any invocation reaches it."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    def invoke(self, payload: bytes, client_context: str | None = None) -> Any:
        from pipeline.emulator import InvokeResult

        self.payloads.append(payload)
        return InvokeResult(request_id="r", payload=payload)


@pytest.fixture
def invoke_server() -> Iterator[tuple[InvokeServer, RecordingEnvironment]]:
    environment = RecordingEnvironment()
    server = InvokeServer(environment, 0)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, environment
    server.shutdown()
    server.server_close()


@pytest.fixture
def runtime_api() -> Iterator[tuple[RuntimeAPIServer, RuntimeState]]:
    state = RuntimeState(timeout=30)
    server = RuntimeAPIServer(state, "test_function", lambda: None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, state
    state.close()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("header", "status"), BAD_LENGTHS)
def test_invoke_refuses_a_body_by_its_length_before_reading_it(
    invoke_server: tuple[InvokeServer, RecordingEnvironment], header: str, status: int
) -> None:
    server, environment = invoke_server
    request = f"POST {INVOKE_PATH} HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode()
    got, body = exchange(server.address, request + b"{}")
    assert got == status
    expected = "RequestTooLargeException" if status == 413 else "InvalidRequestContentException"
    assert json.loads(body)["errorType"] == expected
    assert environment.payloads == []
    # The server still answers the next caller.
    ok = f"POST {INVOKE_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
    assert exchange(server.address, ok.encode() + b"{}") == (200, b"{}")
    assert environment.payloads == [b"{}"]


# A runtime may post its response in chunks (aws-lambda-go does): read up to Lambda's limit.
RESPONSE_BAD_LENGTHS = [case for case in BAD_LENGTHS if "chunked" not in case[0]]


@pytest.mark.parametrize(("header", "status"), RESPONSE_BAD_LENGTHS)
def test_runtime_api_refuses_a_response_by_its_length_before_reading_it(
    runtime_api: tuple[RuntimeAPIServer, RuntimeState], header: str, status: int
) -> None:
    server, state = runtime_api
    invocation = Invocation(b"{}")
    state.submit(invocation)
    assert state.next() is invocation
    path = f"{RUNTIME_PREFIX}/invocation/{invocation.request_id}/response"
    got, body = exchange(server.address, f"POST {path} HTTP/1.1\r\n{header}\r\n".encode())
    assert got == status
    if status == 413:
        # Over Lambda's limit: the invocation fails as Lambda reports it.
        assert invocation.result is not None
        assert invocation.result.error_type == "Function.ResponseSizeTooLarge"
    else:
        assert json.loads(body)["errorType"] == "InvalidRequestContentException"
        assert invocation.result is None  # the runtime may still answer properly
        answer = f"POST {path} HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n42"
        assert exchange(server.address, answer.encode())[0] == 202
        assert invocation.result is not None and invocation.result.payload == b"42"


def test_a_client_that_stops_sending_is_dropped(
    runtime_api: tuple[RuntimeAPIServer, RuntimeState], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(JSONHandler, "timeout", 0.5)
    server, _ = runtime_api
    host, port = server.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=GUARD) as conn:
        # Headers promise 100 bytes; 3 come, then nothing.
        conn.sendall(
            f"POST {RUNTIME_PREFIX}/init/error HTTP/1.1\r\nContent-Length: 100\r\n\r\n".encode()
        )
        conn.sendall(b"abc")
        assert conn.recv(65536) == b""  # closed by the server, not by the guard's timeout


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "900.5", "1e9"])
def test_invoke_timeout_must_be_finite_and_at_most_900_seconds(value: str) -> None:
    proc = lambda_images("invoke", "some/image:tag", "--timeout", value, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--timeout" in lines[0] and "at most 900" in lines[0], lines
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args", [("invoke", "x:y", "--memory", "64"), ("serve", "x:y", "--port", "70000")]
)
def test_memory_and_port_out_of_range_are_usage_errors(args: tuple[str, ...]) -> None:
    proc = lambda_images(*args, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_runtime_api_refuses_a_chunked_response_over_the_limit_before_reading_it(
    runtime_api: tuple[RuntimeAPIServer, RuntimeState],
) -> None:
    server, state = runtime_api
    invocation = Invocation(b"{}")
    state.submit(invocation)
    assert state.next() is invocation
    path = f"{RUNTIME_PREFIX}/invocation/{invocation.request_id}/response"
    size = f"{6 * 1024 * 1024 + 1:x}"
    request = f"POST {path} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\n".encode()
    got, body = exchange(server.address, request)
    assert got == 413
    assert json.loads(body)["errorType"] == "Function.ResponseSizeTooLarge"
    assert invocation.result is not None
    assert invocation.result.error_type == "Function.ResponseSizeTooLarge"


# Chunked bodies: anything but hex digits (and extensions) on a size line, a line that never
# ends, or data not followed by CRLF is refused (400), and the invocation still waits for a
# proper response; int(…, 16) alone would take "-1" (read to the end of the stream) or "0x10".
BAD_CHUNKS = [
    b"-1\r\n",
    b"+10\r\nabc",
    b"0x10\r\n",
    b"1_0\r\n",
    b" 10\r\n",
    b"\r\n",
    b"0" * 2000 + b"2\r\nok\r\n0\r\n\r\n",  # a size line over 1 KiB: not an empty body
    b"2\r\nokXX0\r\n\r\n",  # data not followed by CRLF
    b"2\r\nok\r\n0\r\n" + b"X-Trailer: 1\r\n" * 40 + b"\r\n",
    b"10000000000000000\r\n",  # 17 digits
]


@pytest.mark.parametrize("chunks", BAD_CHUNKS, ids=[c[:12].decode() for c in BAD_CHUNKS])
def test_runtime_api_refuses_a_malformed_chunked_body(
    runtime_api: tuple[RuntimeAPIServer, RuntimeState], chunks: bytes
) -> None:
    server, state = runtime_api
    invocation = Invocation(b"{}")
    state.submit(invocation)
    assert state.next() is invocation
    path = f"{RUNTIME_PREFIX}/invocation/{invocation.request_id}/response"
    head = f"POST {path} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    got, body = exchange(server.address, head + chunks)
    assert got == 400
    assert json.loads(body)["errorType"] == "InvalidRequestContentException"
    assert invocation.result is None
    good = head.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nConnection: close\r\n")
    assert exchange(server.address, good + b"2\r\n42\r\n0\r\n\r\n")[0] == 202
    assert invocation.result is not None and invocation.result.payload == b"42"


# Framing a request two ways (RFC 9112, 6.3): refused, never guessed. One POST with two
# Content-Length headers was read with the first and the rest served as a second invocation.
TWO_FRAMINGS = [
    "Content-Length: 2\r\nContent-Length: 80\r\n",
    "Content-Length: 80\r\nContent-Length: 2\r\n",
    "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
    "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    "Transfer-Encoding: gzip, chunked\r\n",
]


@pytest.mark.parametrize("headers", TWO_FRAMINGS)
def test_invoke_refuses_a_request_framed_two_ways_and_invokes_nothing(
    invoke_server: tuple[InvokeServer, RecordingEnvironment], headers: str
) -> None:
    server, environment = invoke_server
    second = f"POST {INVOKE_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}"
    body = "{}" + second.ljust(78)[:78]
    request = f"POST {INVOKE_PATH} HTTP/1.1\r\nHost: x\r\n{headers}\r\n{body}"
    got, answer = exchange(server.address, request.encode())
    assert got == 400
    assert json.loads(answer)["errorType"] == "InvalidRequestContentException"
    assert environment.payloads == []


@pytest.mark.parametrize("headers", TWO_FRAMINGS[:4])
def test_runtime_api_refuses_a_response_framed_two_ways(
    runtime_api: tuple[RuntimeAPIServer, RuntimeState], headers: str
) -> None:
    server, state = runtime_api
    invocation = Invocation(b"{}")
    state.submit(invocation)
    assert state.next() is invocation
    path = f"{RUNTIME_PREFIX}/invocation/{invocation.request_id}/response"
    request = f"POST {path} HTTP/1.1\r\n{headers}\r\n42\r\n"
    assert exchange(server.address, request.encode())[0] == 400
    assert invocation.result is None


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "body",
    [DEEP, b'{"errorMessage": "m", "errorType": "E", "stackTrace": ' + DEEP + b"}"],
    ids=["deep-array", "deep-stack-trace"],
)
def test_a_deeply_nested_error_is_taken_as_text_and_answered(
    runtime_api: tuple[RuntimeAPIServer, RuntimeState], body: bytes
) -> None:
    server, state = runtime_api
    invocation = Invocation(b"{}")
    state.submit(invocation)
    assert state.next() is invocation
    path = f"{RUNTIME_PREFIX}/invocation/{invocation.request_id}/error"
    head = f"POST {path} HTTP/1.1\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    assert exchange(server.address, head.encode() + body)[0] == 202
    assert invocation.result is not None
    assert invocation.result.error_type == "Runtime.Unknown"
    assert json.loads(invocation.result.payload)["errorMessage"] == body.decode()
    init = f"POST {RUNTIME_PREFIX}/init/error HTTP/1.1\r\nContent-Length: {len(body)}\r\n"
    assert exchange(server.address, f"{init}Connection: close\r\n\r\n".encode() + body)[0] == 202
    assert state.init_error_type == "Runtime.Unknown"
