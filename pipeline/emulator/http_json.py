"""The HTTP plumbing both of the emulator's endpoints share: a quiet threaded server, JSON replies.

The Runtime API (``runtime_api``) and the invoke endpoint (``invoke``) differ only in their routes.
A body is delimited strictly (one ``Content-Length``, or a well-formed chunked encoding where the
endpoint takes one), so that no part of one request can be read as another.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from .function import MAX_PAYLOAD, error_payload, too_large_message

# A client that stops sending (or reading) for this long is dropped. The Runtime API's
# long poll waits for events without reading, so this never cuts a runtime off.
SOCKET_TIMEOUT: Final = 60.0
MAX_LINE: Final = 1024  # a chunk's size line, a trailer line
MAX_TRAILERS: Final = 32
# A chunk's size: hex digits only (no sign, no 0x, no spaces, no underscores, which int(…, 16)
# would take), at most 16 of them, maybe extensions, then the line's end.
_CHUNK_SIZE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[^\r\n]*)?\r?\n")


class BadFraming(Exception):
    """A body whose length cannot be known for sure: answered 400, the connection closed."""


class TooLarge(Exception):
    """A body over the endpoint's limit; ``size`` is what it announced (or reached)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class QuietServer(ThreadingHTTPServer):
    """Threaded, and silent about clients that hang up (a killed container, a caller's Ctrl-C)."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def address(self) -> str:
        """``host:port`` the server listens on."""
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"


class JSONHandler(BaseHTTPRequestHandler):
    """Keep-alive, unlogged requests answered with JSON bodies."""

    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT
    # Headers and body go out in separate writes: without this, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every reply.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, problem: str) -> None:
        """400 for a body whose framing is wrong; the connection is closed (where its body
        ends is unknown, so nothing after it can be read as a request)."""
        self.close_connection = True
        self._reply(
            HTTPStatus.BAD_REQUEST, error_payload("InvalidRequestContentException", problem)
        )

    def _refuse_too_large(self, size: int) -> None:
        """413 as Lambda's Invoke answers a request over its limit; the connection is closed
        (its body stays unread)."""
        self.close_connection = True
        message = too_large_message("Request", size)
        error = error_payload("RequestTooLargeException", message)
        self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, error)

    def _body(self, limit: int = MAX_PAYLOAD, *, chunked: bool = False) -> bytes:
        """The request's body, framed by exactly one ``Content-Length`` (judged before a byte
        of the body is read) or, where ``chunked`` allows it, by ``Transfer-Encoding:
        chunked`` (read no further than ``limit``). A request with both, either one twice, or
        a malformed one is BadFraming (RFC 9112, 6.3: such a message cannot be delimited, and
        a server that guessed would take the rest for another request); over ``limit`` is
        TooLarge."""
        lengths = self.headers.get_all("Content-Length") or []
        encodings = self.headers.get_all("Transfer-Encoding") or []
        if len(lengths) > 1 or len(encodings) > 1 or (lengths and encodings):
            raise BadFraming("give one Content-Length (or, where accepted, one Transfer-Encoding)")
        if encodings:
            if not chunked:
                raise BadFraming("Transfer-Encoding is not supported; send Content-Length")
            if encodings[0].strip().lower() != "chunked":
                raise BadFraming(f"Transfer-Encoding {encodings[0][:40]!r} is not supported")
            return self._chunked(limit)
        if not lengths:
            raise BadFraming("Content-Length is required")
        raw = lengths[0].strip()
        if not (raw.isascii() and raw.isdigit()):
            raise BadFraming(f"Content-Length {raw[:40]!r} is not a non-negative integer")
        length = int(raw[:20]) if len(raw) <= 20 else sys.maxsize
        if length > limit:
            raise TooLarge(length)
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise BadFraming("the body is shorter than its Content-Length")
        return body

    def _chunked(self, limit: int) -> bytes:
        """A chunked body (RFC 9112, 7.1: a line with the chunk's size in hex, its data and a
        CRLF, up to a zero-size chunk and trailer lines ending with an empty one), as
        aws-lambda-go posts responses; read no further than ``limit``."""
        body = bytearray()
        while True:
            line = self.rfile.readline(MAX_LINE + 1)
            match = _CHUNK_SIZE.fullmatch(line)
            if match is None:
                raise BadFraming("malformed chunk size line")
            size = int(match[1], 16)
            if size == 0:
                break
            if len(body) + size > limit:
                raise TooLarge(len(body) + size)
            data = self.rfile.read(size)
            if len(data) != size or self.rfile.read(2) != b"\r\n":
                raise BadFraming("a chunk is shorter than its size, or not followed by CRLF")
            body += data
        for _ in range(MAX_TRAILERS):
            line = self.rfile.readline(MAX_LINE + 1)
            if not line.endswith(b"\n"):
                raise BadFraming("malformed trailer")
            if not line.strip():
                return bytes(body)
        raise BadFraming(f"more than {MAX_TRAILERS} trailer lines")
