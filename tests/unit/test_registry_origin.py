"""Registry answers a real registry would never give, from a hostile stand-in on 127.0.0.1: an
upload session on another host, a plain-http token realm, a token or password with a line
break, a blob served under another digest. Credentials go only to the registry's own origin,
and each case is one RegistryError that does not quote the secret."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.errors import RegistryError, UsageError
from pipeline.oci.credentials import Credentials
from pipeline.oci.registry import Registry, RegistryRef
from pipeline.oci.transport import RetryPolicy, default_scheme

ONE_TRY = RetryPolicy(attempts=1, initial=0.01, cap=0.01, timeout=10)
DIGEST = "sha256:" + "ab" * 32

Reply = tuple[int, dict[str, str], bytes]


class StandIn:
    """An HTTP server on 127.0.0.1 answering with ``route(method, path)``; it records every
    request's method, path and Authorization header."""

    def __init__(self, route: Callable[[str, str], Reply]) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.seen.append((self.command, self.path, self.headers.get("Authorization")))
                status, headers, body = route(self.command, self.path)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers() -> Iterator[list[StandIn]]:
    made: list[StandIn] = []
    yield made
    for server in made:
        server.close()


def basic_challenge(method: str, path: str) -> Reply | None:
    if path == "/v2/":
        return 401, {"WWW-Authenticate": 'Basic realm="stand-in"'}, b"{}"
    return None


def creds(password: str) -> Credentials:
    return Credentials(username="tester", password=password, source="the test")


def test_an_upload_session_on_another_host_gets_no_credentials(servers: list[StandIn]) -> None:
    password = secrets.token_urlsafe(16)
    foreign = StandIn(lambda m, p: (201, {}, b""))
    servers.append(foreign)

    def route(method: str, path: str) -> Reply:
        if (reply := basic_challenge(method, path)) is not None:
            return reply
        if method == "HEAD":
            return 404, {}, b""
        if method == "POST" and "/blobs/uploads/" in path:
            return 202, {"Location": f"http://{foreign.host}/upload/1"}, b""
        return 400, {}, b"{}"

    registry = StandIn(route)
    servers.append(registry)
    client = Registry(registry.host, credentials=creds(password), retry=ONE_TRY)
    with pytest.raises(RegistryError, match="upload session is on another host") as caught:
        client.push_bytes("ns/repo", b"config")
    assert password not in str(caught.value)
    assert foreign.seen == []  # neither the blob nor the credentials went there
    sent = [auth for _, _, auth in registry.seen if auth]
    assert sent and all(auth.startswith("Basic ") for auth in sent)


def test_a_plain_http_token_realm_gets_no_password(servers: list[StandIn]) -> None:
    password = secrets.token_urlsafe(16)
    realm = StandIn(lambda m, p: (200, {}, b'{"token": "t"}'))
    servers.append(realm)
    # The registry is loopback and plain http, but its realm is another host over http.
    challenge = 'Bearer realm="http://realm.example.invalid/token",service="s"'
    registry = StandIn(lambda m, p: (401, {"WWW-Authenticate": challenge}, b"{}"))
    servers.append(registry)
    client = Registry(registry.host, credentials=creds(password), retry=ONE_TRY)
    with pytest.raises(
        RegistryError, match=r"token realm http://realm\.example\.invalid is not https"
    ):
        client.blob_exists("ns/repo", DIGEST)
    assert [m for m, _, _ in registry.seen] == ["GET"]  # only the unauthenticated /v2/


def test_a_token_with_a_line_break_is_refused_without_being_shown(
    servers: list[StandIn],
) -> None:
    token = secrets.token_urlsafe(16) + "\r\nX-Injected: 1"
    realm = StandIn(lambda m, p: (200, {}, json.dumps({"token": token}).encode()))
    servers.append(realm)
    challenge = f'Bearer realm="http://{realm.host}/token",service="s"'
    registry = StandIn(lambda m, p: (401, {"WWW-Authenticate": challenge}, b"{}"))
    servers.append(registry)
    client = Registry(registry.host, credentials=creds("pw"), retry=ONE_TRY)
    with pytest.raises(RegistryError, match="line breaks or control characters") as caught:
        client.blob_exists("ns/repo", DIGEST)
    assert token.split("\r")[0] not in str(caught.value)
    assert [m for m, _, _ in registry.seen] == ["GET"]


def test_a_password_with_a_line_break_is_refused_without_being_shown(
    servers: list[StandIn],
) -> None:
    password = secrets.token_urlsafe(16) + "\r\n"
    registry = StandIn(lambda m, p: basic_challenge(m, p) or (404, {}, b""))
    servers.append(registry)
    client = Registry(registry.host, credentials=creds(password), retry=ONE_TRY)
    with pytest.raises(RegistryError, match="line break") as caught:
        client.blob_exists("ns/repo", DIGEST)
    assert password.strip() not in str(caught.value)
    # The first request (the version check) goes out without credentials; the challenge it
    # gets is not answered with them.
    assert registry.seen == [("GET", "/v2/", None)]


def test_a_blob_served_under_another_digest_is_refused(servers: list[StandIn]) -> None:
    other = "sha256:" + "cd" * 32

    def route(method: str, path: str) -> Reply:
        return basic_challenge(method, path) or (200, {"Docker-Content-Digest": other}, b"")

    registry = StandIn(route)
    servers.append(registry)
    client = Registry(registry.host, credentials=creds("pw"), retry=ONE_TRY)
    with pytest.raises(RegistryError, match=f"reported as {other}"):
        client.push_bytes("ns/repo", b"config")
    assert not [m for m, _, _ in registry.seen if m in ("POST", "PUT")]


def test_a_failed_upload_deletes_its_session(servers: list[StandIn]) -> None:
    def route(method: str, path: str) -> Reply:
        if (reply := basic_challenge(method, path)) is not None:
            return reply
        if method == "HEAD":
            return 404, {}, b""
        if method == "POST":
            return 202, {"Location": "/v2/ns/repo/blobs/uploads/session-1?_state=x"}, b""
        if method == "PUT":
            return 400, {}, b'{"errors": [{"code": "DIGEST_INVALID", "message": "no"}]}'
        return 204, {}, b""

    registry = StandIn(route)
    servers.append(registry)
    client = Registry(registry.host, credentials=creds("pw"), retry=ONE_TRY)
    with pytest.raises(RegistryError, match="HTTP 400"):
        client.push_bytes("ns/repo", b"config")
    assert ("DELETE", "/v2/ns/repo/blobs/uploads/session-1?_state=x") in [
        (m, p) for m, p, _ in registry.seen
    ]


@pytest.mark.parametrize(
    ("host", "scheme"),
    [
        ("[::1]:5000", "http"),
        ("[::1]", "http"),
        ("localhost:5000", "http"),
        ("127.0.0.1:5000", "http"),
        ("127.1.2.3", "http"),
        ("public.ecr.aws", "https"),
        ("[2001:db8::1]:5000", "https"),
        ("10.0.0.1:5000", "https"),
    ],
)
def test_only_loopback_registries_default_to_http(host: str, scheme: str) -> None:
    assert default_scheme(host) == scheme
    assert RegistryRef.parse(f"{host}/ns").scheme == scheme


@pytest.mark.parametrize(
    "text", ["tester:{secret}@127.0.0.1:5000/ns", "https://{secret}@registry.example/ns"]
)
def test_credentials_in_the_registry_reference_are_refused_unshown(text: str) -> None:
    secret = base64.b32encode(secrets.token_bytes(10)).decode()
    with pytest.raises(UsageError, match="credentials in the registry reference") as caught:
        RegistryRef.parse(text.format(secret=secret))
    assert secret not in str(caught.value)
