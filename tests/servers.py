"""Real servers for publish tests: a CNCF distribution registry with htpasswd auth, and a
fault-injecting HTTP proxy in front of it. Both listen on 127.0.0.1 only."""

from __future__ import annotations

import functools
import http.client
import json
import random
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

MAX_BODY = 1 << 30  # the proxy refuses bodies above 1 GiB rather than buffering them


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RegistryServer:
    """``docker-registry serve`` on a fixed free port; stop() and start() keep the storage."""

    def __init__(self, root: Path, *, access_log: bool = False) -> None:
        """``access_log``: the registry logs every request it answers to ``log_path``."""
        if shutil.which("docker-registry") is None:
            raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.users = {"tester": secrets.token_urlsafe(16), "AWS": secrets.token_urlsafe(24)}
        htpasswd = root / "htpasswd"
        lines = []
        for user, password in self.users.items():
            proc = subprocess.run(
                ["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True
            )
            lines.append(proc.stdout.strip())
        htpasswd.write_text("\n".join(lines) + "\n")
        self.config = root / "config.yml"
        self.config.write_text(
            "version: 0.1\n"
            f"log:\n  level: warn\n  accesslog:\n    disabled: {str(not access_log).lower()}\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
            f"http:\n  addr: {self.host}\n  secret: {secrets.token_hex(16)}\n"
            f"auth:\n  htpasswd:\n    realm: test-registry\n    path: {htpasswd}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "registry.log"

    def requests_logged(self) -> list[tuple[str, str, int]]:
        """(method, path with query, status) of each request in the registry's access log."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            match = re.search(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3}) ', line)
            if match:
                found.append((match[1], match[2], int(match[3])))
        return found

    @property
    def username(self) -> str:
        return "tester"

    @property
    def password(self) -> str:
        return self.users["tester"]

    def start(self) -> None:
        log = (self.root / "registry.log").open("ab")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(self.config)], stdout=log, stderr=log
        )
        for _ in range(200):
            try:
                if requests.get(f"http://{self.host}/v2/", timeout=1).status_code == 401:
                    return
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"docker-registry did not start; see {self.root / 'registry.log'}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(
            f"http://{self.host}{path}",
            auth=(self.username, self.password),
            timeout=30,
            **kwargs,  # type: ignore[arg-type]
        )

    def tag_digest(self, repo: str, tag: str) -> str | None:
        accept = (
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
        )
        r = requests.head(
            f"http://{self.host}/v2/{repo}/manifests/{tag}",
            auth=(self.username, self.password),
            headers={"Accept": accept},
            timeout=30,
        )
        return r.headers["Docker-Content-Digest"] if r.status_code == 200 else None


class FaultProxy:
    """Forwards to ``upstream``; fails a share of requests with 503, 429 or a dropped
    connection (before or after the registry saw the request), from a seeded generator.
    Counts the blob bytes that reached the registry and the manifests written."""

    FAULTS = ("503", "429", "drop-before", "drop-after")

    def __init__(
        self, upstream: str, *, fault_rate: float = 0.0, seed: int = 7, bearer: bool = False
    ) -> None:
        self.upstream = upstream
        # bearer=True: act as a token-auth front (as ECR Public and Docker Hub are): 401 with a
        # Bearer challenge, tokens from /token for valid Basic credentials, swapped back
        # to those credentials upstream.
        self.bearer = bearer
        self.tokens: dict[str, str] = {}
        self.token_queries: list[str] = []
        self.fault_rate = fault_rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.requests = 0
        self.faults: dict[str, int] = dict.fromkeys(self.FAULTS, 0)
        self.upload_bytes = 0
        self.manifest_puts: list[str] = []
        self.authorizations: list[str | None] = []  # each request's Authorization header
        self.on_request: Callable[[str, str], None] | None = None
        # (method, path fragment, status): answer matching requests with that status.
        self.refuse: tuple[str, str, int] | None = None
        self.refused = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.send_error(413)
                    return
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    proxy.authorizations.append(self.headers.get("Authorization"))
                if proxy.on_request is not None:
                    proxy.on_request(self.command, self.path)
                if (
                    proxy.refuse
                    and self.command == proxy.refuse[0]
                    and proxy.refuse[1] in self.path
                ):
                    with proxy.lock:
                        proxy.refused += 1
                    self._reply(proxy.refuse[2], b'{"errors":[]}', {})
                    return
                upstream_auth = self.headers.get("Authorization")
                if proxy.bearer:
                    upstream_auth = self._bearer()
                    if upstream_auth is None:
                        return
                with proxy.lock:
                    proxy.requests += 1
                    fault = None
                    if proxy.rng.random() < proxy.fault_rate:
                        fault = proxy.rng.choice(proxy.FAULTS)
                        proxy.faults[fault] += 1
                if fault == "drop-before":
                    self.close_connection = True
                    return
                if fault in ("503", "429"):
                    payload = b'{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}'
                    self.send_response(int(fault))
                    if fault == "429":
                        self.send_header("Retry-After", "1")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                try:
                    status, headers, data = self._forward(body, upstream_auth)
                except OSError:
                    self.close_connection = True  # upstream down: the client sees a drop
                    return
                with proxy.lock:
                    if body and "/blobs/uploads/" in self.path and status in (201, 202, 204):
                        proxy.upload_bytes += len(body)
                    if self.command == "PUT" and "/manifests/" in self.path and status == 201:
                        proxy.manifest_puts.append(self.path)
                if fault == "drop-after":
                    self.close_connection = True
                    return
                self.send_response(status)
                for key, value in headers:
                    if key.lower() in ("transfer-encoding", "connection", "content-length"):
                        continue
                    self.send_header(key, value)
                length_header = dict((k.lower(), v) for k, v in headers).get("content-length")
                if self.command == "HEAD":
                    self.send_header("Content-Length", length_header or "0")
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _reply(self, status: int, payload: bytes, extra: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _bearer(self) -> str | None:
                """Upstream credentials for this request, or None once a reply was sent."""
                auth = self.headers.get("Authorization", "")
                if self.path.startswith("/token"):
                    status, _, _ = self._forward(b"", auth, path="/v2/")
                    if status != 200:
                        self._reply(401, b"{}", {"Content-Type": "application/json"})
                        return None
                    token = secrets.token_urlsafe(24)
                    with proxy.lock:
                        proxy.tokens[token] = auth
                        proxy.token_queries.append(self.path.partition("?")[2])
                    payload = json.dumps({"token": token}).encode()
                    self._reply(200, payload, {"Content-Type": "application/json"})
                    return None
                given = auth.removeprefix("Bearer ")
                if auth.startswith("Bearer ") and given in proxy.tokens:
                    return proxy.tokens[given]
                challenge = f'Bearer realm="http://{proxy.host}/token",service="test-registry"'
                self._reply(401, b"{}", {"WWW-Authenticate": challenge})
                return None

            def _forward(
                self, body: bytes, auth: str | None, path: str | None = None
            ) -> tuple[int, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                try:
                    headers = {
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() not in ("connection", "authorization")
                    }
                    if auth:
                        headers["Authorization"] = auth
                    if path is not None:
                        conn.request("GET", path, headers=headers)
                        response = conn.getresponse()
                        return response.status, response.getheaders(), response.read()
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    return response.status, response.getheaders(), data
                finally:
                    conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # clients resetting dropped connections are expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class StandIn:
    """A package registry's stand-in on 127.0.0.1 (a context manager): ``routes`` maps a
    request path to the bytes served there (404 elsewhere), or ``status``, when set, answers
    every request; ``root`` is a folder of its own for what tests keep beside it."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.status: int | None = None
        self.seen: list[str] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="stand-in-")
        self.root = Path(self._tmp.name)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.partition("?")[0]
                outer.seen.append(path)
                body = outer.routes.get(path)
                status = outer.status or (200 if body is not None else 404)
                self.send_response(status)
                payload = body if status == 200 and body is not None else b""
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StandIn:
        serve = functools.partial(self.server.serve_forever, poll_interval=0.05)
        threading.Thread(target=serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._tmp.cleanup()
