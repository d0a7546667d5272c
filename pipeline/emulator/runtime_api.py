"""The Runtime API a function's runtime talks to, and the bookkeeping of the events it serves.

The runtime inside the container asks ``GET …/invocation/next`` for an event and answers with
``POST …/invocation/{id}/response`` or ``…/error``, or ``POST …/init/error`` when it cannot start.
One ``RuntimeAPIServer`` serves one container, on an ephemeral port of the address the container
reaches (network.py), and answers only requests that name it by the container's own name for it
(``Host: runtime-<random>:PORT``); its ``RuntimeState`` holds the event waiting to be picked up
and the one being handled.

API reference: https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Final

from .function import MAX_PAYLOAD, InvokeResult, error_payload, function_arn, too_large_message
from .http_json import BadFraming, JSONHandler, QuietServer, TooLarge

RUNTIME_PREFIX: Final = "/2018-06-01/runtime"
_INVOCATION = re.compile(rf"{RUNTIME_PREFIX}/invocation/([^/]+)/(response|error)")


def trace_id() -> str:
    """An X-Ray trace header as Lambda passes it (Root=1-<epoch hex>-<96 bits>;…)."""
    return (
        f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};"
        f"Parent={secrets.token_hex(8)};Sampled=0"
    )


class Invocation:
    """One event on its way through the runtime; ``done`` is set once it has an outcome."""

    def __init__(self, payload: bytes, client_context: str | None = None) -> None:
        self.request_id = str(uuid.uuid4())
        self.payload = payload
        self.client_context = client_context
        self.trace_id = trace_id()
        self.deadline_ms = 0
        self.picked_up = threading.Event()
        self.done = threading.Event()
        self.result: InvokeResult | None = None
        self._lock = threading.Lock()

    def finish(self, payload: bytes, error_type: str | None = None) -> bool:
        """Record the outcome unless there already is one (a response racing the timeout)."""
        with self._lock:
            if self.done.is_set():
                return False
            self.result = InvokeResult(
                request_id=self.request_id, payload=payload, error_type=error_type
            )
            self.done.set()
            return True

    def fail(self, error_type: str, message: str) -> bool:
        """``finish`` with an error in Lambda's shape."""
        return self.finish(error_payload(error_type, message), error_type)

    def outcome(self) -> InvokeResult:
        """The result of a finished invocation."""
        assert self.result is not None
        return self.result


class RuntimeState:
    """What the Runtime API server shares with the environment that owns it."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.cond = threading.Condition()
        self.pending: Invocation | None = None  # waiting for /next
        self.current: Invocation | None = None  # handed out, no response yet
        self.init_error: bytes | None = None
        self.init_error_type: str | None = None
        self.closed = False
        self.contacted = False  # the runtime has reached this Runtime API at least once

    def submit(self, invocation: Invocation) -> None:
        with self.cond:
            self.pending = invocation
            self.cond.notify_all()

    def next(self) -> Invocation | None:
        """Block until there is an event for the runtime (None when shutting down)."""
        with self.cond:
            while self.pending is None and not self.closed:
                self.cond.wait()
            if self.closed or self.pending is None:
                return None
            invocation, self.pending = self.pending, None
            invocation.deadline_ms = int((time.time() + self.timeout) * 1000)
            self.current = invocation
            invocation.picked_up.set()
            return invocation

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class RuntimeAPIHandler(JSONHandler):
    server: RuntimeAPIServer

    def _accepted(self) -> None:
        self._reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}')

    def _error_body(self, body: bytes) -> tuple[bytes, str]:
        """A runtime-posted error as Lambda's JSON shape, and its type."""
        header_type = self.headers.get("Lambda-Runtime-Function-Error-Type", "")
        try:
            data = json.loads(body)
            if isinstance(data, dict) and ("errorType" in data or "errorMessage" in data):
                error_type = str(data.get("errorType") or header_type or "Runtime.Unknown")
                shaped = {"errorMessage": data.get("errorMessage", ""), "errorType": error_type}
                if "stackTrace" in data:
                    shaped["stackTrace"] = data["stackTrace"]
                return json.dumps(shaped).encode(), error_type
        except (ValueError, RecursionError):
            pass  # not JSON, or nested too deeply to parse or write again: taken as text
        error_type = header_type or "Runtime.Unknown"
        return error_payload(error_type, body.decode(errors="replace")), error_type

    def _for_us(self) -> bool:
        """True when the request names this Runtime API as its container knows it (the
        ``Host`` header); anyone else is refused (403, the connection closed)."""
        host = self.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        if secrets.compare_digest(name.lower().encode(), self.server.name.encode()):
            self.server.state.contacted = True
            return True
        self.close_connection = True
        message = "this Runtime API answers its function's container only"
        self._reply(HTTPStatus.FORBIDDEN, error_payload("AccessDeniedException", message))
        return False

    def do_GET(self) -> None:
        state = self.server.state
        if not self._for_us():
            return
        if self.path != f"{RUNTIME_PREFIX}/invocation/next":
            self._reply(HTTPStatus.NOT_FOUND, error_payload("NotFound", self.path))
            return
        invocation = state.next()
        if invocation is None:
            self._reply(HTTPStatus.GONE, error_payload("ShuttingDown", "environment closed"))
            return
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": function_arn(self.server.function_name),
            "Lambda-Runtime-Trace-Id": invocation.trace_id,
        }
        if invocation.client_context:
            headers["Lambda-Runtime-Client-Context"] = invocation.client_context
        self._reply(HTTPStatus.OK, invocation.payload, headers)

    def do_POST(self) -> None:
        state = self.server.state
        if not self._for_us():
            return
        if self.path == f"{RUNTIME_PREFIX}/init/error":
            try:
                body = self._body(MAX_PAYLOAD, chunked=True)
            except TooLarge as exc:
                self._refuse_too_large(exc.size)
                return
            except BadFraming as exc:
                self._refuse(str(exc))
                return
            state.init_error, state.init_error_type = self._error_body(body)
            self.server.on_init_error()  # Lambda ends an environment whose init failed
            self._accepted()
            return
        match = _INVOCATION.fullmatch(self.path)
        if not match:
            self.close_connection = True  # its body, if any, stays unread
            self._reply(HTTPStatus.NOT_FOUND, error_payload("NotFound", self.path))
            return
        request_id, kind = match.groups()
        invocation = state.current
        if invocation is None or invocation.request_id != request_id:
            self.close_connection = True
            self._reply(
                HTTPStatus.BAD_REQUEST,
                error_payload("InvalidRequestID", f"unknown or finished request {request_id}"),
            )
            return
        # The size is judged from Content-Length, before the body is read: a response over
        # Lambda's limit fails the invocation without being held in memory. A chunked body
        # (aws-lambda-go sends one) is read up to the limit and no further. A body that
        # cannot be delimited is refused and leaves the invocation waiting for a proper one.
        try:
            body = self._body(MAX_PAYLOAD, chunked=True)
        except TooLarge as exc:  # a response, or an error report, over Lambda's limit
            self._too_large(invocation, exc.size)
            return
        except BadFraming as exc:
            self._refuse(str(exc))
            return
        if kind == "response":
            invocation.finish(body)
        else:
            payload, error_type = self._error_body(body)
            invocation.finish(payload, error_type)
        with state.cond:
            if state.current is invocation:
                state.current = None
        self._accepted()

    def _too_large(self, invocation: Invocation, size: int) -> None:
        error_type = "Function.ResponseSizeTooLarge"
        message = too_large_message("Response", size)
        invocation.fail(error_type, message)
        self.close_connection = True
        self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, error_payload(error_type, message))


class RuntimeAPIServer(QuietServer):
    """The Runtime API of one container, on an ephemeral port of ``listen``, answering requests
    addressed to ``name`` (the container's name for it; a random one when not given)."""

    def __init__(
        self,
        state: RuntimeState,
        function_name: str,
        on_init_error: Callable[[], None],
        *,
        listen: str = "127.0.0.1",
        name: str | None = None,
    ) -> None:
        super().__init__((listen, 0), RuntimeAPIHandler)
        self.state = state
        self.function_name = function_name
        self.on_init_error = on_init_error
        self.name = (name or f"runtime-{secrets.token_hex(16)}").lower()

    @property
    def runtime_api(self) -> str:
        """``AWS_LAMBDA_RUNTIME_API`` for the container: its name for this server, and the port."""
        return f"{self.name}:{self.server_address[1]}"

    def start(self) -> None:
        """Serve from a background thread until ``stop``."""
        threading.Thread(target=self.serve_forever, name="runtime-api", daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
