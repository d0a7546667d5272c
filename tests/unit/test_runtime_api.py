"""Local invocation through the Runtime API emulator: `lambda-images invoke` and `serve`."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

import pytest

from pipeline.emulator import (
    RUNTIME_PREFIX,
    RuntimeAPIServer,
    RuntimeState,
    function_arn,
    read_event,
)
from pipeline.errors import UsageError


def test_event_is_inline_json_or_a_file(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"from": "file"}')
    assert read_event('{"a": 1}') == b'{"a": 1}'
    assert read_event(f"@{event}") == b'{"from": "file"}'
    with pytest.raises(UsageError, match="not JSON"):
        read_event("{nope")
    with pytest.raises(UsageError, match="cannot read"):
        read_event(f"@{tmp_path / 'missing.json'}")


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_runtime_api_hands_out_events_with_lambda_headers() -> None:
    from pipeline.emulator import Invocation

    state = RuntimeState(timeout=30)
    server = RuntimeAPIServer(state, "test_function", lambda: None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://{server.address}{RUNTIME_PREFIX}"
    try:
        invocation = Invocation(b'{"hello": "runtime"}')
        state.submit(invocation)
        status, headers, body = _http("GET", f"{base}/invocation/next")
        assert status == 200
        assert body == b'{"hello": "runtime"}'
        assert headers["Lambda-Runtime-Aws-Request-Id"] == invocation.request_id
        assert headers["Lambda-Runtime-Invoked-Function-Arn"] == function_arn()
        assert headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-")
        assert int(headers["Lambda-Runtime-Deadline-Ms"]) > 0

        status, _, body = _http("POST", f"{base}/invocation/not-this-one/response", b"{}")
        assert status == 400
        assert json.loads(body)["errorType"] == "InvalidRequestID"

        status, _, _ = _http("POST", f"{base}/invocation/{invocation.request_id}/response", b"42")
        assert status == 202
        assert invocation.result is not None
        assert invocation.result.payload == b"42"
        assert invocation.result.ok
    finally:
        state.close()
        server.shutdown()
        server.server_close()


def test_runtime_api_reads_chunked_responses() -> None:
    """aws-lambda-go posts responses with Transfer-Encoding: chunked (and may add trailers)."""
    import http.client

    from pipeline.emulator import Invocation

    state = RuntimeState(timeout=30)
    server = RuntimeAPIServer(state, "test_function", lambda: None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        invocation = Invocation(b'{"n": 1}')
        state.submit(invocation)
        connection = http.client.HTTPConnection(server.address, timeout=30)
        connection.request("GET", f"{RUNTIME_PREFIX}/invocation/next")
        response = connection.getresponse()
        request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
        response.read()
        path = f"{RUNTIME_PREFIX}/invocation/{request_id}/response"
        chunks = [b'{"echo": ', b'{"n": 1}', b', "more": "' + b"x" * 5000 + b'"}']
        connection.request(
            "POST",
            path,
            body=iter(chunks),
            headers={"Transfer-Encoding": "chunked"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        response.read()
        assert response.status == 202
        assert invocation.result is not None and invocation.result.ok
        assert json.loads(invocation.result.payload) == {"echo": {"n": 1}, "more": "x" * 5000}
        # The same keep-alive connection serves the next request: the body was read whole.
        connection.request("GET", f"{RUNTIME_PREFIX}/invocation/not-a-route")
        again = connection.getresponse()
        again.read()
        assert again.status in (400, 404)
        connection.close()
    finally:
        state.close()
        server.shutdown()
        server.server_close()


def test_runtime_api_shapes_errors_and_init_errors_as_lambda_does() -> None:
    from pipeline.emulator import Invocation

    state = RuntimeState(timeout=30)
    init_errors: list[bool] = []
    server = RuntimeAPIServer(state, "test_function", lambda: init_errors.append(True))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://{server.address}{RUNTIME_PREFIX}"
    try:
        invocation = Invocation(b"{}")
        state.submit(invocation)
        _, headers, _ = _http("GET", f"{base}/invocation/next")
        request_id = headers["Lambda-Runtime-Aws-Request-Id"]
        # A runtime that posts plain text still gives the caller Lambda's JSON shape.
        status, _, _ = _http("POST", f"{base}/invocation/{request_id}/error", b"it broke")
        assert status == 202
        assert invocation.result is not None
        assert invocation.result.error_type == "Runtime.Unknown"
        assert json.loads(invocation.result.payload) == {
            "errorMessage": "it broke",
            "errorType": "Runtime.Unknown",
        }
        # Once answered, the request is finished.
        status, _, _ = _http("POST", f"{base}/invocation/{request_id}/response", b"{}")
        assert status == 400

        body = json.dumps({"errorMessage": "no config", "errorType": "Init.Config"}).encode()
        status, _, _ = _http("POST", f"{base}/init/error", body)
        assert status == 202
        assert init_errors == [True]  # the environment is told, to end the container
        assert state.init_error_type == "Init.Config"
    finally:
        state.close()
        server.shutdown()
        server.server_close()


# --- against the real engine -------------------------------------------------------------------
