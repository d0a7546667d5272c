"""A Lambda Runtime API emulator: run a function image locally the way Lambda runs it.

Lambda drives a function from outside its sandbox: the runtime inside the container asks the
Runtime API (``AWS_LAMBDA_RUNTIME_API``) for the next event and posts back a response or an error.
This module serves that API from the host, to one container at a time, and the invoke endpoint
``POST /2015-03-31/functions/function/invocations`` to callers, like AWS's runtime interface
emulator — which cannot be fetched here, and could not drive an image that lacks it anyway.

One ``ExecutionEnvironment`` is one Lambda execution environment: a container started with the
settings Lambda uses (read-only root filesystem, writable ``/tmp``, a non-root user, a memory
limit, the ``AWS_LAMBDA_*`` variables, the handler as the command) and one Runtime API server on
an ephemeral 127.0.0.1 port that only this container talks to (``network_mode="host"``).
Invocations are served one at a time; concurrent callers queue. A container that exits is
started again, through init, for the next invocation; an invocation that times out kills it.

API references: https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html and
https://docs.aws.amazon.com/lambda/latest/dg/images-test.html.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import docker.errors
import requests

from . import log
from .errors import EngineError

FUNCTION_NAME: Final = "test_function"
ACCOUNT: Final = "012345678912"
REGION: Final = "us-east-1"
DEFAULT_TIMEOUT: Final = 300.0  # seconds, as AWS's emulator
DEFAULT_MEMORY_MB: Final = 3008
# Lambda's sandbox user (sbx_user1051) has these ids.
LAMBDA_USER: Final = "993:990"
TMP_SIZE_MB: Final = 512  # Lambda's default ephemeral storage
MAX_PAYLOAD: Final = 6 * 1024 * 1024  # synchronous invocation request and response limit
CONTAINER_LABEL: Final = "lambda-images.emulator"
RUNTIME_PREFIX: Final = "/2018-06-01/runtime"
INVOKE_PATH: Final = "/2015-03-31/functions/function/invocations"
TOO_LARGE: Final = "RequestTooLargeException"
SIGNALS: Final = {6: "aborted", 9: "killed", 11: "segmentation fault", 15: "terminated"}
_INVOCATION = re.compile(rf"^{RUNTIME_PREFIX}/invocation/([^/]+)/(response|error)$")


def function_arn(name: str = FUNCTION_NAME) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def error_payload(error_type: str, message: str) -> bytes:
    """Lambda's shape for an error that reaches the caller."""
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


def trace_id() -> str:
    """An X-Ray trace header as Lambda passes it (Root=1-<epoch hex>-<96 bits>;…)."""
    return (
        f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};"
        f"Parent={secrets.token_hex(8)};Sampled=0"
    )


@dataclass(frozen=True, kw_only=True)
class FunctionConfig:
    """How to run the function: what Lambda's function configuration would say."""

    image: str
    handler: str | None = None  # None: the image's CMD
    code: Path | None = None  # mounted read-only at /var/task
    timeout: float = DEFAULT_TIMEOUT
    memory_mb: int = DEFAULT_MEMORY_MB
    function_name: str = FUNCTION_NAME
    environment: Mapping[str, str] = field(default_factory=dict)
    read_only: bool = True  # False (and user "0") only for the conformance write check
    user: str = LAMBDA_USER


@dataclass(frozen=True, kw_only=True)
class InvokeResult:
    request_id: str
    payload: bytes
    error_type: str | None = None  # set when the function (or its runtime) failed

    @property
    def ok(self) -> bool:
        return self.error_type is None

    def error_message(self) -> str:
        try:
            data = json.loads(self.payload)
        except ValueError:
            return self.payload.decode(errors="replace")
        if isinstance(data, dict):
            return str(data.get("errorMessage", ""))
        return str(data)


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


class RuntimeAPIHandler(BaseHTTPRequestHandler):
    server: RuntimeAPIServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every reply.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(
        self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _accepted(self) -> None:
        self._reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}')

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _error_body(self, body: bytes) -> tuple[bytes, str]:
        """A runtime-posted error as Lambda's JSON shape, and its type."""
        header_type = self.headers.get("Lambda-Runtime-Function-Error-Type", "")
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and ("errorType" in data or "errorMessage" in data):
            error_type = str(data.get("errorType") or header_type or "Runtime.Unknown")
            shaped = {"errorMessage": data.get("errorMessage", ""), "errorType": error_type}
            if "stackTrace" in data:
                shaped["stackTrace"] = data["stackTrace"]
            return json.dumps(shaped).encode(), error_type
        error_type = header_type or "Runtime.Unknown"
        return error_payload(error_type, body.decode(errors="replace")), error_type

    def do_GET(self) -> None:
        state = self.server.state
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
        body = self._body()
        if self.path == f"{RUNTIME_PREFIX}/init/error":
            state.init_error, state.init_error_type = self._error_body(body)
            self.server.on_init_error()  # Lambda ends an environment whose init failed
            self._accepted()
            return
        match = _INVOCATION.match(self.path)
        if not match:
            self._reply(HTTPStatus.NOT_FOUND, error_payload("NotFound", self.path))
            return
        request_id, kind = match.groups()
        invocation = state.current
        if invocation is None or invocation.request_id != request_id:
            self._reply(
                HTTPStatus.BAD_REQUEST,
                error_payload("InvalidRequestID", f"unknown or finished request {request_id}"),
            )
            return
        if kind == "response":
            if len(body) > MAX_PAYLOAD:
                message = (
                    f"Response payload size ({len(body)} bytes) exceeded maximum allowed "
                    f"payload size ({MAX_PAYLOAD} bytes)."
                )
                invocation.finish(
                    error_payload("Function.ResponseSizeTooLarge", message),
                    "Function.ResponseSizeTooLarge",
                )
                self._reply(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    error_payload("Function.ResponseSizeTooLarge", message),
                )
                return
            invocation.finish(body)
        else:
            payload, error_type = self._error_body(body)
            invocation.finish(payload, error_type)
        with state.cond:
            if state.current is invocation:
                state.current = None
        self._accepted()


class QuietServer(ThreadingHTTPServer):
    """Threaded, and silent about clients that hang up (a killed container, a caller's Ctrl-C)."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class RuntimeAPIServer(QuietServer):
    def __init__(
        self, state: RuntimeState, function_name: str, on_init_error: Callable[[], None]
    ) -> None:
        super().__init__(("127.0.0.1", 0), RuntimeAPIHandler)
        self.state = state
        self.function_name = function_name
        self.on_init_error = on_init_error

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"


LogSink = Callable[[str], None]


class _StartFailed(Exception):
    """The engine created the function's container but could not start its entrypoint."""


class ExecutionEnvironment:
    """One execution environment: a function container and its Runtime API, one event at a time."""

    def __init__(self, config: FunctionConfig, client: Any, sink: LogSink | None = None) -> None:
        self.config = config
        self.client = client
        self.sink: LogSink = sink or (lambda line: log.detail(f"  {line}"))
        self._invoke_lock = threading.Lock()
        self._container: Any = None
        self._state: RuntimeState | None = None
        self._server: RuntimeAPIServer | None = None
        self._exited = threading.Event()
        self._exit_code: int | None = None
        self._threads: list[threading.Thread] = []
        self.inits = 0  # containers started (cold starts)
        self.changes: list[dict[str, Any]] = []  # filesystem changes of finished containers
        self.platform = self._platform()

    # --- container lifecycle -------------------------------------------------------------------

    def _platform(self) -> str | None:
        try:
            image = self.client.images.get(self.config.image)
        except docker.errors.ImageNotFound:
            msg = f"no image {self.config.image!r} in the Docker Engine; build or pull it first"
            raise EngineError(msg) from None
        except docker.errors.APIError as exc:
            raise EngineError(f"inspecting {self.config.image}: {exc.explanation or exc}") from None
        architecture = image.attrs.get("Architecture") or ""
        return f"{image.attrs.get('Os') or 'linux'}/{architecture}" if architecture else None

    def environment(self, runtime_api: str) -> dict[str, str]:
        cfg = self.config
        env = {
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": cfg.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{cfg.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"$LATEST/{uuid.uuid4().hex}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }
        env.update(cfg.environment)
        return env

    def _start(self) -> None:
        cfg = self.config
        state = RuntimeState(cfg.timeout)
        server = RuntimeAPIServer(state, cfg.function_name, self._kill)
        serve = threading.Thread(target=server.serve_forever, name="runtime-api", daemon=True)
        serve.start()
        volumes = {}
        if cfg.code is not None:
            volumes[str(cfg.code.resolve())] = {"bind": "/var/task", "mode": "ro"}
        command = [cfg.handler] if cfg.handler else None
        flags = ["--read-only"] if cfg.read_only else []
        log.command(["docker", "run", *flags, "--network=host", cfg.image, *(command or [])])
        try:
            container = self.client.containers.create(
                cfg.image,
                command=command,
                environment=self.environment(server.address),
                network_mode="host",
                read_only=cfg.read_only,
                tmpfs={"/tmp": f"rw,nosuid,nodev,size={TMP_SIZE_MB}m,mode=1777"},
                user=cfg.user,
                mem_limit=f"{cfg.memory_mb}m",
                memswap_limit=f"{cfg.memory_mb}m",
                volumes=volumes,
                labels={CONTAINER_LABEL: cfg.function_name},
                platform=self.platform,
            )
        except docker.errors.APIError as exc:
            server.shutdown()
            server.server_close()
            raise EngineError(
                f"creating a container of {cfg.image}: {exc.explanation or exc}"
            ) from None
        try:
            container.start()
        except docker.errors.APIError as exc:
            # The image itself cannot start (ENTRYPOINT missing, not executable…): on Lambda
            # this is the function's error, not the emulator's.
            container.remove(force=True)
            server.shutdown()
            server.server_close()
            raise _StartFailed(str(exc.explanation or exc)) from None
        self._container, self._state, self._server = container, state, server
        self._exited = threading.Event()
        self._exit_code = None
        self.inits += 1
        for target, name in ((self._watch, "container-wait"), (self._logs, "container-logs")):
            thread = threading.Thread(target=target, args=(container,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _watch(self, container: Any) -> None:
        code = -1
        while True:
            try:
                code = int(container.wait().get("StatusCode", -1))
                break
            except requests.exceptions.ReadTimeout:
                continue  # a request timeout (when the client sets one), not the container
            except (docker.errors.APIError, requests.exceptions.RequestException):
                break
        if container is self._container:
            self._exit_code = code
            self._exited.set()

    def _logs(self, container: Any) -> None:
        try:
            for chunk in container.logs(stream=True, follow=True):
                # Runtimes end the lines of one log record with \r (CloudWatch keeps them together).
                for line in chunk.decode(errors="replace").replace("\r", "\n").splitlines():
                    self.sink(line)
        except (docker.errors.APIError, requests.exceptions.RequestException):
            pass

    def _kill(self) -> None:
        container = self._container
        if container is None:
            return
        with contextlib.suppress(docker.errors.APIError):  # already gone
            container.kill()

    def _stop(self) -> None:
        """Tear the current container and its Runtime API down (waits for them)."""
        container, state, server = self._container, self._state, self._server
        if container is not None:
            self._kill()
            self._exited.wait(30)
            if not self.config.read_only:
                with contextlib.suppress(docker.errors.APIError):
                    self.changes.extend(container.diff() or [])
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        if state is not None:
            state.close()
        if server is not None:
            server.shutdown()
            server.server_close()
        self._container = self._state = self._server = None
        for thread in self._threads:
            thread.join(5)
        self._threads = []

    # --- invoking ------------------------------------------------------------------------------

    def invoke(self, payload: bytes, client_context: str | None = None) -> InvokeResult:
        """Run one event through the function; concurrent calls wait their turn."""
        with self._invoke_lock:
            if self._container is not None and self._exited.is_set():
                self._stop()  # died after the last invocation: init again
            invocation = Invocation(payload, client_context)
            if len(payload) > MAX_PAYLOAD:
                message = (
                    f"Request payload size ({len(payload)} bytes) exceeded maximum "
                    f"allowed payload size ({MAX_PAYLOAD} bytes)."
                )
                invocation.finish(error_payload(TOO_LARGE, message), TOO_LARGE)
                assert invocation.result is not None
                return invocation.result
            if self._container is None:
                try:
                    self._start()
                except _StartFailed as exc:
                    message = f"RequestId: {invocation.request_id} Error: {exc}"
                    error_type = "Runtime.InvalidEntrypoint"
                    invocation.finish(error_payload(error_type, message), error_type)
                    assert invocation.result is not None
                    return invocation.result
            return self._run(invocation)

    def _run(self, invocation: Invocation) -> InvokeResult:
        state = self._state
        assert state is not None
        state.submit(invocation)
        # Init gets the function's timeout, and so does the invocation once the runtime has
        # picked it up (its deadline is the one the runtime was told in Lambda-Runtime-Deadline-Ms).
        init_end = time.monotonic() + self.config.timeout
        while not invocation.done.wait(0.05):
            if self._exited.is_set():
                self._container_exited(invocation, state)
                break
            if invocation.picked_up.is_set():
                remaining = invocation.deadline_ms / 1000 - time.time()
            else:
                remaining = init_end - time.monotonic()
            if remaining <= 0:
                self._timed_out(invocation)
                break
        result = invocation.result
        assert result is not None
        return result

    def _container_exited(self, invocation: Invocation, state: RuntimeState) -> None:
        # The init error, if the runtime posted one before exiting, is what Lambda reports.
        if state.init_error is not None and state.init_error_type is not None:
            invocation.finish(state.init_error, state.init_error_type)
        else:
            code = self._exit_code if self._exit_code is not None else -1
            # As Lambda words it: "exit status N", or "signal: killed" (out of memory, killed).
            if code > 128:
                reason = f"signal: {SIGNALS.get(code - 128, f'signal {code - 128}')}"
            else:
                reason = f"exit status {code}"
            message = (
                f"RequestId: {invocation.request_id} Error: Runtime exited with error: {reason}"
            )
            invocation.finish(error_payload("Runtime.ExitError", message), "Runtime.ExitError")
        self._stop()

    def _timed_out(self, invocation: Invocation) -> None:
        message = f"Task timed out after {self.config.timeout:.2f} seconds"
        if invocation.finish(error_payload("Sandbox.Timedout", message), "Sandbox.Timedout"):
            self._stop()  # Lambda ends the environment; the next invocation starts a new one

    def close(self) -> None:
        with self._invoke_lock:
            self._stop()

    def __enter__(self) -> ExecutionEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the invoke endpoint ---------------------------------------------------------------------


class InvokeHandler(BaseHTTPRequestHandler):
    server: InvokeServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        if self.path.split("?")[0] != INVOKE_PATH:
            self._reply(HTTPStatus.NOT_FOUND, error_payload("ResourceNotFoundException", self.path))
            return
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else b"{}"
        result = self.server.environment.invoke(payload, client_context(self.headers))
        headers = {"X-Amz-Request-Id": result.request_id}
        if result.error_type:
            # As Lambda's Invoke API: 200, the error in the body, flagged by this header.
            headers["X-Amz-Function-Error"] = "Unhandled"
        self._reply(HTTPStatus.OK, result.payload, headers)

    def _reply(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def client_context(headers: Any) -> str | None:
    """Invoke's X-Amz-Client-Context (base64 JSON) as the runtime receives it (JSON)."""
    import base64
    import binascii

    encoded = headers.get("X-Amz-Client-Context")
    if not encoded:
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


class InvokeServer(QuietServer):
    def __init__(
        self, environment: ExecutionEnvironment, port: int, host: str = "127.0.0.1"
    ) -> None:
        super().__init__((host, port), InvokeHandler)
        self.environment = environment

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{INVOKE_PATH}"


# --- entry points for the CLI ----------------------------------------------------------------


def read_event(event: str) -> bytes:
    """``--event``: inline JSON, or ``@path`` to a JSON file; Lambda accepts only JSON."""
    from .errors import UsageError

    if event.startswith("@"):
        path = Path(event[1:])
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise UsageError(f"--event {event}: cannot read {path}: {exc.strerror}") from None
        where = str(path)
    else:
        text, where = event, "--event"
    try:
        json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{where}: not JSON ({exc}); Lambda events are JSON documents") from None
    return text.encode()


def check_code_dir(code: Path) -> None:
    """The code is mounted for Lambda's non-root user: say so when it could not read it."""
    from .errors import UsageError

    if not code.is_dir():
        raise UsageError(f"--code {code}: not a directory")
    if code.stat().st_mode & 0o005 != 0o005:
        msg = (
            f"--code {code}: the directory is not readable by other users, and the function runs "
            f"as a non-root user ({LAMBDA_USER}) as on Lambda; chmod o+rx {code}"
        )
        raise UsageError(msg)


def invoke_once(config: FunctionConfig, client: Any, payload: bytes) -> InvokeResult:
    with ExecutionEnvironment(config, client) as environment:
        return environment.invoke(payload)


def serve(config: FunctionConfig, client: Any, port: int, ready: Callable[[str], None]) -> None:
    """Keep the invoke endpoint up until interrupted (SIGINT or SIGTERM); clean up after."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    # Also when started in the background by a shell, which ignores SIGINT for it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with ExecutionEnvironment(config, client) as environment:
        try:
            server = InvokeServer(environment, port)
        except OSError as exc:
            raise EngineError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
        try:
            ready(server.url)
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
            signal.signal(signal.SIGTERM, previous)
