"""A registry that answers badly, on purpose: each case ends in one line on stderr (a
RegistryError, exit 7), no traceback, in bounded time and memory, and nothing written outside
the folder the client was given.

The registry is a stand-in HTTP server on 127.0.0.1 (``Hostile`` below) answering from a route
per case; the client runs in its own process (``run_client``), so that its peak memory is its
own and a hang or a traceback cannot hide in this one. The peak is the client's ``VmHWM`` at
exit: a child's ``ru_maxrss`` (``getrusage``, ``wait4``) would also count this process's memory
at the time it was spawned, on Linux. To add a case, append a ``Case``: the route, the client
call, the text its one line must hold.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
REPO = "ns/repo"
MAX_RSS = 200 * 1024 * 1024  # bytes
MAX_SECONDS = 20.0  # per case, process start included
MIB = 1024 * 1024
RETRY_NOTE = re.compile(r"^    127\.0\.0\.1:\d+: .*; retry \d+/\d+ in [\d.]+s$")

Body = bytes | Callable[[], Iterable[bytes]]
Reply = tuple[int, dict[str, str], Body]
Route = Callable[[str, str, str], Reply]  # (method, path, the server's host)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(data: bytes, media_type: str = "application/octet-stream") -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}


def image_manifest(layers: list[dict[str, Any]]) -> bytes:
    config = descriptor(b"{}", "application/vnd.oci.image.config.v1+json")
    body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers}
    return json.dumps(body).encode()


def index_of(entries: list[dict[str, Any]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()


def zeros(total: int) -> Callable[[], Iterator[bytes]]:
    """A body of ``total`` zero bytes, made as it is sent (never held whole)."""

    def chunks() -> Iterator[bytes]:
        block = bytes(MIB)
        for _ in range(total // MIB):
            yield block

    return chunks


class Hostile:
    """An HTTP/1.1 server on 127.0.0.1: ``route(method, path, host)`` gives status, headers and a
    body (bytes, or a function giving chunks; without a Content-Length the body ends when the
    connection closes). ``/v2/`` answers 200 unless the route says otherwise."""

    def __init__(self, route: Route) -> None:
        self.requests = 0

        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                outer.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, headers, body = route(self.command, self.path, outer.host)
                if status == 200 and self.path == "/v2/" and not headers and body == b"":
                    body = b"{}"
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if isinstance(body, bytes):
                    if "Content-Length" not in headers:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                    return
                self.close_connection = True
                self.end_headers()
                try:
                    for chunk in body():
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading, as it should

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# The client, in its own process: one Registry call (or the outdated stage's read of a
# published image's dpkg status), an error printed as the CLI prints it.
CLIENT = """
import atexit, json, sys
from pathlib import Path


def peak():
    # This process's own peak resident memory (kB), for the test to read.
    status = Path("/proc/self/status").read_text()
    Path(sys.argv[2]).write_text(status.split("VmHWM:")[1].split()[0])


atexit.register(peak)
from pipeline import log
from pipeline.errors import LambdaImagesError
from pipeline.oci.credentials import Credentials
from pipeline.oci.registry import Registry
from pipeline.oci.transport import RetryPolicy

spec = json.loads(sys.argv[1])
log.configure(github_actions=spec["github"])
credentials = None
if spec["password"]:
    credentials = Credentials(username="tester", password=spec["password"], source="the test")
policy = RetryPolicy(attempts=2, initial=0.01, cap=0.05, timeout=2)
client = Registry(spec["host"], credentials=credentials, retry=policy)
call, args = spec["call"], spec["args"]
try:
    if call == "status":
        from pipeline.outdated import read_published_status
        _, manifest = client.image_manifest("ns/repo", "tag", "amd64")
        read_published_status(client, "ns/repo", manifest)
    elif call == "fetch_blob":
        client.fetch_blob("ns/repo", args[0], Path(args[1]), args[2])
    else:
        getattr(client, call)("ns/repo", *args)
except LambdaImagesError as exc:
    log.error(str(exc))
    sys.exit(exc.return_code)
print("no error")
"""


@dataclass(frozen=True, kw_only=True)
class Ran:
    code: int
    stdout: str
    stderr: str
    rss: int  # the client's peak resident set size (VmHWM), bytes
    seconds: float


def run_client(spec: dict[str, Any], folder: Path) -> Ran:
    """Run CLIENT with ``spec`` in a child process of its own; its exit code, output, peak
    memory and time. A child still running after MAX_SECONDS is killed (and the case then
    fails on its time)."""
    out, err, peak = folder / "stdout", folder / "stderr", folder / "peak"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDA_IMAGES_", "DOCKER_"))}
    env |= {"NO_COLOR": "1", "TMPDIR": str(folder)}
    started = time.monotonic()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", CLIENT, json.dumps(spec), str(peak)],
            stdout=stdout,
            stderr=stderr,
            cwd=folder,
            env=env,
        )
    try:
        code = proc.wait(MAX_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    return Ran(
        code=code,
        stdout=out.read_text(errors="replace"),
        stderr=err.read_text(errors="replace"),
        rss=int(peak.read_text()) * 1024 if peak.exists() else 0,
        seconds=time.monotonic() - started,
    )


# --- the cases ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Case:
    id: str
    route: Route
    says: str
    call: str = "image_manifest"
    args: tuple[Any, ...] = ("tag", "amd64")
    password: str = ""
    github: bool = False  # GITHUB_ACTIONS: errors also become ::error:: lines on stdout
    files: dict[str, bytes] = field(default_factory=dict)
    # A payload that takes seconds to make is made before the client starts: made on its first
    # request, it would make the stand-in slower than the client's timeout on a busy machine.
    warm: Callable[[], object] | None = None


def manifests(answers: dict[str, Reply]) -> Route:
    """A registry without authentication that answers manifest requests by reference."""

    def route(method: str, path: str, host: str) -> Reply:
        if path == "/v2/":
            return 200, {}, b""
        reference = path.rpartition("/manifests/")[2]
        if "/manifests/" in path and reference in answers:
            return answers[reference]
        return 404, {}, b'{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]}'

    return route


def manifest_reply(body: Body, headers: dict[str, str] | None = None) -> Reply:
    return 200, {"Content-Type": OCI_MANIFEST, **(headers or {})}, body


LAYER = b"layer bytes"
GOOD = image_manifest([descriptor(LAYER, "application/vnd.oci.image.layer.v1.tar+gzip")])
OTHER = image_manifest([])
AMD64 = {"platform": {"architecture": "amd64", "os": "linux"}}


def index_reply(entries: list[dict[str, Any]]) -> Reply:
    return 200, {"Content-Type": OCI_INDEX}, index_of(entries)


def status_bomb(size: int) -> bytes:
    """A gzip'd layer holding ``var/lib/dpkg/status`` of ``size`` zero bytes (a few hundred KB
    on the wire)."""
    raw = io.BytesIO()

    class Zeros:
        def read(self, size: int) -> bytes:
            return bytes(size)

    info = tarfile.TarInfo("var/lib/dpkg/status")
    info.size = size
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w|") as tar,
    ):
        tar.addfile(info, Zeros())  # type: ignore[arg-type]
    return raw.getvalue()


@functools.cache
def bomb() -> bytes:
    return status_bomb(300 * MIB)


@functools.cache
def gzip_bomb() -> bytes:
    """300 MiB of zeros, gzip'd (about 300 KB), made without holding them."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    block = bytes(MIB)
    return b"".join(packer.compress(block) for _ in range(300)) + packer.flush()


def layer_route(made: Callable[[], bytes]) -> Route:
    """A registry holding one image (its tag ``tag``) of one layer, ``made()``."""

    def route(method: str, path: str, host: str) -> Reply:
        layer = made()
        manifest = image_manifest(
            [descriptor(layer, "application/vnd.oci.image.layer.v1.tar+gzip")]
        )
        if path == "/v2/":
            return 200, {}, b""
        if path.endswith("/manifests/tag"):
            return manifest_reply(manifest)
        if path.endswith(f"/blobs/{digest_of(layer)}"):
            return 200, {}, layer
        return 404, {}, b"{}"

    return route


def bearer(token_reply: Reply) -> Route:
    """A registry asking for a bearer token from its own /token, which answers ``token_reply``."""

    def route(method: str, path: str, host: str) -> Reply:
        if path.startswith("/token"):
            return token_reply
        challenge = f'Bearer realm="http://{host}/token",service="s"'
        return 401, {"WWW-Authenticate": challenge}, b"{}"

    return route


def tag_pages(link: Callable[[str], str]) -> Route:
    """A tag list whose every page links to ``link(host)`` as the next one."""

    def route(method: str, path: str, host: str) -> Reply:
        if path == "/v2/":
            return 200, {}, b""
        return 200, {"Link": f'<{link(host)}>; rel="next"'}, b'{"tags": ["a"]}'

    return route


HOSTILE_TEXT = (
    "denied\n::add-mask::hunter2\n::error file=x::forged\r\n%0A::warning::encoded "
    "\x1b[2J\x1b]0;title\x07 \u202egnp.exe"
)

ESCAPE = "/tmp/lambda-images-hostile-escape"

CASES = [
    Case(
        id="manifest-not-json",
        route=manifests({"tag": manifest_reply(b"<html>not json</html>")}),
        says="the manifest ns/repo:tag is not JSON",
    ),
    Case(
        id="manifest-nested-too-deeply",
        route=manifests({"tag": manifest_reply(b"[" * 200_000 + b"]" * 200_000)}),
        says="is not JSON (nested too deeply)",
    ),
    Case(
        id="manifest-a-list",
        route=manifests({"tag": manifest_reply(b"[1]")}),
        says="is malformed: a JSON list, not an object",
    ),
    Case(
        id="manifest-layers-not-a-list",
        route=manifests({"tag": manifest_reply(b'{"schemaVersion": 2, "layers": "x"}')}),
        says="is malformed: layers is not a list",
    ),
    Case(
        id="index-entry-without-digest",
        route=manifests({"tag": index_reply([{"mediaType": OCI_MANIFEST, "size": 1, **AMD64}])}),
        says="is malformed: manifests[0] is no descriptor with a sha256 digest and a size",
    ),
    Case(
        id="index-entry-digest-a-path",
        route=manifests(
            {"tag": index_reply([{**descriptor(GOOD), "digest": "sha256:../../x", **AMD64}])}
        ),
        says="is malformed: manifests[0] is no descriptor",
    ),
    Case(
        id="index-child-other-bytes",
        route=manifests(
            {
                "tag": index_reply([{**descriptor(GOOD, OCI_MANIFEST), **AMD64}]),
                digest_of(GOOD): manifest_reply(OTHER),
            }
        ),
        says=f"the manifest ns/repo:{digest_of(GOOD)} is {digest_of(OTHER)}; the registry "
        "answered other bytes",
    ),
    Case(
        id="tag-wrong-content-digest",
        route=manifests({"tag": manifest_reply(GOOD, {"Docker-Content-Digest": digest_of(OTHER)})}),
        says=f"ns/repo:tag is reported as {digest_of(OTHER)} but its bytes are {digest_of(GOOD)}",
    ),
    Case(
        id="head-content-digest-not-a-digest",
        route=manifests({"tag": manifest_reply(b"", {"Docker-Content-Digest": "md5:abc"})}),
        call="manifest_digest",
        args=("tag",),
        says="ns/repo:tag is reported as 'md5:abc', which is no sha256 digest",
    ),
    Case(
        id="manifest-150-mb",
        route=manifests({"tag": manifest_reply(zeros(150 * MIB), {"Content-Length": "157286400"})}),
        says="GET manifest tag: the answer is longer than 4.0 MiB; refused",
        warm=gzip_bomb,
    ),
    Case(
        id="manifest-150-mb-unannounced",
        route=manifests({"tag": manifest_reply(zeros(150 * MIB))}),
        says="GET manifest tag: the answer is longer than 4.0 MiB; refused",
    ),
    Case(
        id="manifest-gzip-bomb",
        route=lambda m, p, h: (
            (200, {}, b"")
            if p == "/v2/"
            else manifest_reply(gzip_bomb(), {"Content-Encoding": "gzip"})
        ),
        says="GET manifest tag: the answer is longer than 4.0 MiB; refused",
    ),
    Case(
        id="error-body-150-mb",
        route=manifests({"tag": (400, {}, zeros(150 * MIB))}),
        says="GET manifest tag: HTTP 400 (Bad Request); the request was rejected",
    ),
    Case(
        id="blob-150-mb",
        route=lambda m, p, h: (200, {}, b"") if p == "/v2/" else (200, {}, zeros(150 * MIB)),
        call="get_blob",
        args=(digest_of(b"sbom"),),
        says="the answer is longer than 64.0 MiB; refused",
    ),
    Case(
        id="layer-longer-than-its-descriptor",
        route=lambda m, p, h: (200, {}, b"") if p == "/v2/" else (200, {}, zeros(20 * MIB)),
        call="fetch_blob",
        args=(digest_of(LAYER), "layer", len(LAYER)),
        says="the answer is longer than 11 B; refused",
    ),
    Case(
        id="layer-digest-a-path",
        route=manifests(
            {"tag": manifest_reply(image_manifest([{**descriptor(LAYER), "digest": ESCAPE}]))}
        ),
        call="status",
        says="is malformed: layers[0] is no descriptor",
    ),
    Case(
        id="blob-digest-a-path",
        route=lambda m, p, h: (200, {}, b"") if p == "/v2/" else (200, {}, LAYER),
        call="fetch_blob",
        args=(ESCAPE, "layer", None),
        says=f"ns/repo: '{ESCAPE}' is no tag or sha256 digest",
    ),
    Case(
        id="dpkg-status-300-mb",
        route=layer_route(bomb),
        call="status",
        says="a layer of the published image: its dpkg status is 300.0 MiB; refused",
        warm=bomb,
    ),
    Case(
        id="retry-after-superscript",
        route=manifests({"tag": (429, {"Retry-After": "\u00b2"}, b"{}")}),
        says="GET manifest tag failed 2 times (last: HTTP 429 on GET /v2/ns/repo/manifests/tag)",
    ),
    Case(
        id="retry-after-a-date-far-away",
        route=manifests({"tag": (503, {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, b"")}),
        says="GET manifest tag failed 2 times",
    ),
    Case(
        id="redirect-to-ftp",
        route=manifests({"tag": (302, {"Location": "ftp://127.0.0.1/x"}, b"")}),
        says="/v2/ns/repo/manifests/tag was redirected to ftp://127.0.0.1/x, which is no http",
    ),
    Case(
        id="redirect-loop",
        route=manifests({"tag": (302, {"Location": "/v2/ns/repo/manifests/tag"}, b"")}),
        says="was redirected more than 5 times; refused (a redirect loop)",
    ),
    Case(
        id="redirect-without-host",
        route=manifests({"tag": (307, {"Location": "https:///x"}, b"")}),
        says="which is no http or https URL",
    ),
    Case(
        id="token-a-list",
        route=bearer((200, {}, b"[1]")),
        password="pw",
        says="the token service answered without a token",
    ),
    Case(
        id="token-not-json",
        route=bearer((200, {}, b"\xff\xfe")),
        password="pw",
        says="the token service answered without a token",
    ),
    Case(
        id="token-150-mb",
        route=bearer((200, {}, zeros(150 * MIB))),
        password="pw",
        says="token for ns/repo: the answer is longer than 4.0 MiB; refused",
    ),
    Case(
        id="tags-link-to-itself",
        route=tag_pages(lambda host: "/v2/ns/repo/tags/list"),
        call="list_tags",
        args=(),
        says="the tag list of ns/repo points back to a page already read; refused",
    ),
    Case(
        id="tags-link-to-another-host",
        route=tag_pages(lambda host: "http://198.51.100.1/v2/ns/repo/tags/list?n=1"),
        call="list_tags",
        args=(),
        says="the tag list of ns/repo points to another host; refused",
    ),
    Case(
        id="tags-not-json",
        route=lambda m, p, h: (200, {}, b"") if p == "/v2/" else (200, {}, b"tags: [a]"),
        call="list_tags",
        args=(),
        says="the tag list of ns/repo is not JSON",
    ),
    Case(
        id="tags-not-tags",
        route=lambda m, p, h: (
            (200, {}, b"")
            if p == "/v2/"
            else (200, {}, json.dumps({"tags": ["ok", "../x\n::error::y"]}).encode())
        ),
        call="list_tags",
        args=(),
        says="the tag list of ns/repo holds other things than tags",
    ),
    Case(
        id="error-text-with-workflow-commands",
        route=manifests(
            {
                "tag": (
                    403,
                    {},
                    json.dumps({"errors": [{"code": "DENIED", "message": HOSTILE_TEXT}]}).encode(),
                )
            }
        ),
        github=True,
        says="HTTP 403 (DENIED: denied\\n::add-mask::hunter2\\n::error file=x::forged\\r\\n",
    ),
    Case(
        id="error-reason-with-escapes",
        route=manifests({"tag": (418, {}, b"\x1b[31m")}),
        github=True,
        says="GET manifest tag: HTTP 418",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_registry_ends_in_one_line_in_bounded_time_and_memory(
    case: Case, tmp_path: Path
) -> None:
    if case.warm is not None:
        case.warm()
    server = Hostile(case.route)
    try:
        spec = {
            "host": server.host,
            "call": case.call,
            "args": list(case.args),
            "password": case.password,
            "github": case.github,
        }
        ran = run_client(spec, tmp_path)
    finally:
        server.close()
    print(f"{case.id}: {ran.rss / MIB:.0f} MiB, {ran.seconds:.2f} s, {server.requests} requests")

    # One line, after the retries' notes (a 429 or 503 is retried as the policy says).
    lines = [line for line in ran.stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not RETRY_NOTE.search(line)]
    assert "Traceback" not in ran.stderr
    assert len(lines) == 1, ran.stderr
    assert case.says in lines[0]
    assert ran.code == 7, ran.stderr
    assert 0 < ran.rss < MAX_RSS
    assert ran.seconds < MAX_SECONDS
    assert not Path(ESCAPE).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["peak", "stderr", "stdout"]
    assert "\x1b" not in ran.stdout + ran.stderr
    if case.github:
        # The one ::error:: line this process writes, and no other workflow command.
        commands = [line for line in ran.stdout.splitlines() if line.lstrip().startswith("::")]
        assert len(commands) == 1 and commands[0].startswith("::error::"), ran.stdout
        assert not any(line.lstrip().startswith("::") for line in ran.stderr.splitlines())


def test_outdated_against_a_hostile_registry_is_one_line_with_exit_7(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The command a schedule runs, end to end: an index whose amd64 entry points at bytes
    other than its digest stops `outdated --registry` with one escaped line, exit 7."""
    from pipeline.cli import main

    entry = {**descriptor(GOOD, OCI_MANIFEST), **AMD64}
    answers = {
        "debian12-x86_64": index_reply([entry]),
        digest_of(GOOD): manifest_reply(OTHER + b"\n::add-mask::x"),
    }
    server = Hostile(manifests(answers))
    for name in list(os.environ):
        if name.startswith(("LAMBDA_IMAGES_", "DOCKER_")) or name == "GITHUB_ACTIONS":
            monkeypatch.delenv(name)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("LAMBDA_IMAGES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.chdir(tmp_path)
    matrix = Path(__file__).resolve().parents[2] / "runtimes.yaml"
    argv = ["--matrix", str(matrix), "outdated", "provided.debian12", "--arch", "x86_64"]
    try:
        with pytest.raises(SystemExit) as exited:
            main([*argv, "--registry", f"{server.host}/lambda"])
    finally:
        server.close()
    _, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(" ")]
    assert exited.value.code == 7, err
    assert lines[-1].startswith(f"error: registry {server.host}: the manifest lambda/provided:")
    assert "answered other bytes than the ones asked for, refused" in lines[-1]
    assert "Traceback" not in err


def test_a_previous_sbom_nested_too_deeply_is_no_sbom() -> None:
    """The SBOM publish reads back to say what changed is the registry's bytes: JSON nested
    beyond what Python parses is taken as no SBOM (no changelog), not a traceback."""
    from pipeline import sbom
    from pipeline.oci.registry import Registry
    from pipeline.oci.transport import RetryPolicy
    from pipeline.publish.notes import previous_sbom

    deep = b"[" * 200_000 + b"]" * 200_000
    artifact = image_manifest([descriptor(deep, sbom.MEDIA_TYPE)])
    subject = digest_of(GOOD)
    listed = {**descriptor(artifact, OCI_MANIFEST), "artifactType": sbom.MEDIA_TYPE}

    def route(method: str, path: str, host: str) -> Reply:
        if path == "/v2/":
            return 200, {}, b""
        if path == f"/v2/{REPO}/referrers/{subject}":
            return index_reply([listed])
        if path == f"/v2/{REPO}/manifests/{digest_of(artifact)}":
            return manifest_reply(artifact)
        if path == f"/v2/{REPO}/blobs/{digest_of(deep)}":
            return 200, {}, deep
        return 404, {}, b"{}"

    server = Hostile(route)
    try:
        client = Registry(server.host, retry=RetryPolicy(attempts=1, timeout=5))
        assert previous_sbom(client, REPO, subject) is None
    finally:
        server.close()


@pytest.mark.parametrize("encoding", ["gzip", "chunked"])
def test_a_manifest_sent_compressed_or_in_chunks_is_read_as_sent(encoding: str) -> None:
    """What a well-behaved registry may do, read right by the bounded reader."""
    from pipeline.oci.registry import Registry
    from pipeline.oci.transport import RetryPolicy

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(GOOD), 100):
            part = GOOD[i : i + 100]
            yield f"{len(part):x}\r\n".encode() + part + b"\r\n"
        yield b"0\r\n\r\n"

    reply = (
        manifest_reply(gzip.compress(GOOD), {"Content-Encoding": "gzip"})
        if encoding == "gzip"
        else manifest_reply(chunks, {"Transfer-Encoding": "chunked"})
    )
    server = Hostile(manifests({"tag": reply}))
    try:
        client = Registry(server.host, retry=RetryPolicy(attempts=1, timeout=5))
        digest, manifest = client.image_manifest(REPO, "tag", "amd64")
    finally:
        server.close()
    assert digest == digest_of(GOOD)
    assert manifest == json.loads(GOOD)
