"""The HTTP plumbing both of the emulator's endpoints share: a quiet threaded server, JSON replies.

The Runtime API (``runtime_api``) and the invoke endpoint (``invoke``) differ only in their routes.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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

    def _body(self, empty: bytes = b"") -> bytes:
        """The request body, or ``empty`` when it has none."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else empty
