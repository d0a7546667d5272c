"""The HTTP plumbing both of the emulator's endpoints share: a quiet threaded server, JSON replies.

The Runtime API (``runtime_api``) and the invoke endpoint (``invoke``) differ only in their routes.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from .function import MAX_PAYLOAD, error_payload, too_large_message

# A client that stops sending (or reading) for this long is dropped. The Runtime API's
# long poll waits for events without reading, so this never cuts a runtime off.
SOCKET_TIMEOUT: Final = 60.0


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

    def _length(self, limit: int = MAX_PAYLOAD) -> int | None:
        """The request's Content-Length, checked before a byte of the body is read; None once
        a 400 (missing, not a number, negative, chunked) or 413 (over ``limit``) was sent,
        and the connection is then closed (its unread body would be taken for a request)."""
        raw = self.headers.get("Content-Length")
        problem = None
        if self.headers.get("Transfer-Encoding"):
            problem = "Transfer-Encoding is not supported; send Content-Length"
        elif raw is None:
            problem = "Content-Length is required"
        elif not (raw.isascii() and raw.isdigit()):
            problem = f"Content-Length {raw[:40]!r} is not a non-negative integer"
        if problem is not None:
            self.close_connection = True
            self._reply(
                HTTPStatus.BAD_REQUEST, error_payload("InvalidRequestContentException", problem)
            )
            return None
        length = int(raw or 0)
        if length > limit:
            self.close_connection = True
            message = too_large_message("Request", length)
            self._reply(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                error_payload("RequestTooLargeException", message),
            )
            return None
        return length

    def _chunked(self, limit: int = MAX_PAYLOAD) -> bytes | None:
        """A body sent with ``Transfer-Encoding: chunked`` (RFC 9112, 7.1: hex size lines, data,
        a zero-size chunk, trailer lines up to an empty one), as aws-lambda-go posts responses.
        None once it is over ``limit`` or malformed; the connection is then closed."""
        body = bytearray()
        while True:
            try:
                size = int(self.rfile.readline(1024).split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                return None
            if size == 0:
                break
            if len(body) + size > limit:
                self.close_connection = True
                return None
            body += self.rfile.read(size)
            self.rfile.readline(8)  # the CRLF after the chunk's data
        while self.rfile.readline(8192).strip():
            pass
        return bytes(body)

    def _is_chunked(self) -> bool:
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    def _read(self, length: int, empty: bytes = b"") -> bytes:
        """Exactly ``length`` bytes of body (already checked by ``_length``), or ``empty``."""
        return self.rfile.read(length) if length else empty
