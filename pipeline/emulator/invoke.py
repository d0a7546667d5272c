"""Invoking a function from outside: the invoke endpoint (``serve``) and one-off invocations.

The endpoint is ``POST /2015-03-31/functions/function/invocations``, as AWS's runtime interface
emulator serves it: https://docs.aws.amazon.com/lambda/latest/dg/images-test.html.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import signal
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final

from ..errors import EngineError, UsageError
from .environment import ExecutionEnvironment
from .function import (
    LAMBDA_USER,
    MAX_PAYLOAD,
    MAX_TIMEOUT,
    FunctionConfig,
    InvokeResult,
    error_payload,
)
from .http_json import BadFraming, JSONHandler, QuietServer, TooLarge
from .options import check_function_name, function_environment

INVOKE_PATH: Final = "/2015-03-31/functions/function/invocations"


class InvokeHandler(JSONHandler):
    server: InvokeServer

    def do_POST(self) -> None:
        if self.path.split("?")[0] != INVOKE_PATH:
            self.close_connection = True  # its body, if any, stays unread
            self._reply(HTTPStatus.NOT_FOUND, error_payload("ResourceNotFoundException", self.path))
            return
        # Lambda's Invoke answers an event over 6 MB with 413 RequestTooLargeException; it is
        # refused from its Content-Length, before the body is read.
        try:
            payload = self._body(MAX_PAYLOAD) or b"{}"
        except BadFraming as exc:
            self._refuse(str(exc))
            return
        except TooLarge as exc:
            self._refuse_too_large(exc.size)
            return
        result = self.server.environment.invoke(payload, client_context(self.headers))
        headers = {"X-Amz-Request-Id": result.request_id}
        if result.error_type:
            # As Lambda's Invoke API: 200, the error in the body, flagged by this header.
            headers["X-Amz-Function-Error"] = "Unhandled"
        self._reply(HTTPStatus.OK, result.payload, headers)


def client_context(headers: Any) -> str | None:
    """Invoke's X-Amz-Client-Context (base64 JSON) as the runtime receives it (JSON)."""
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
        return f"http://{self.address}{INVOKE_PATH}"


# --- entry points for the CLI ----------------------------------------------------------------


def read_event(event: str) -> bytes:
    """``--event``: inline JSON, or ``@path`` to a JSON file; Lambda accepts only JSON, of at
    most MAX_PAYLOAD bytes (a file is read no further than that)."""
    if event.startswith("@"):
        path = Path(event[1:])
        if not event[1:]:
            raise UsageError("--event @: expected @FILE, the path of a JSON file")
        try:
            with path.open("rb") as file:
                raw = file.read(MAX_PAYLOAD + 1)
        except OSError as exc:
            raise UsageError(f"--event {event}: cannot read {path}: {exc.strerror}") from None
        where = str(path)
    else:
        raw, where = event.encode("utf-8", "surrogateescape"), "--event"
    if len(raw) > MAX_PAYLOAD:
        msg = f"{where}: larger than {MAX_PAYLOAD} bytes, Lambda's limit for an event"
        raise UsageError(msg)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = f"byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        msg = f"--event {event}: not UTF-8 ({byte}); Lambda events are JSON documents"
        raise UsageError(msg) from None
    try:
        json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{where}: not JSON ({exc}); Lambda events are JSON documents") from None
    except RecursionError:
        raise UsageError(f"{where}: JSON nested too deeply to be read") from None
    return raw


def check_timeout(seconds: float) -> None:
    """``--timeout``: a finite number of seconds in (0, 900], the range Lambda accepts."""
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT):
        msg = f"--timeout {seconds}: expected seconds more than 0 and at most {MAX_TIMEOUT:g}"
        raise UsageError(msg)


def check_code_dir(code: Path) -> None:
    """The code is mounted for Lambda's non-root user: say so when it could not read it."""
    if not code.is_dir():
        raise UsageError(f"--code {code}: not a directory")
    if code.stat().st_mode & 0o005 != 0o005:
        msg = (
            f"--code {code}: the directory is not readable by other users, and the function runs "
            f"as a non-root user ({LAMBDA_USER}) as on Lambda; chmod o+rx {code}"
        )
        raise UsageError(msg)


def function_config(
    image: str,
    *,
    handler: str | None,
    code: Path | None,
    timeout: float,
    memory: int,
    function_name: str,
    env_pairs: Sequence[str],
    env_file: Path | None,
    layers: Sequence[Path],
    environ: Mapping[str, str],
) -> FunctionConfig:
    """The function's configuration from the command line's values (``--env KEY`` passes on
    ``environ``'s value), each checked before any container starts."""
    check_timeout(timeout)
    if code is not None:
        check_code_dir(code)
    return FunctionConfig(
        image=image,
        handler=handler,
        code=code,
        timeout=timeout,
        memory_mb=memory,
        function_name=check_function_name(function_name),
        environment=function_environment(env_pairs, env_file, environ),
        layers=tuple(layers),
    )


def invoke_once(
    config: FunctionConfig, client: Any, payload: bytes, *, runtime_api_host: str = ""
) -> InvokeResult:
    """One invocation in a fresh environment; a SIGTERM stops it and removes the container
    (as Ctrl-C does) instead of leaving it running. ``runtime_api_host``: network.py."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        with ExecutionEnvironment(config, client, runtime_api_host=runtime_api_host) as environment:
            return environment.invoke(payload)
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(
    config: FunctionConfig,
    client: Any,
    port: int,
    ready: Callable[[str], None],
    *,
    runtime_api_host: str = "",
) -> None:
    """Keep the invoke endpoint up until interrupted (SIGINT or SIGTERM); clean up after.
    ``runtime_api_host``: network.py."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    # Also when started in the background by a shell, which ignores SIGINT for it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with ExecutionEnvironment(config, client, runtime_api_host=runtime_api_host) as environment:
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
