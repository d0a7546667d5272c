"""Apt archives of the tests' own, served on the Docker bridge's gateway address, which both the
host (mmdebstrap, `outdated`) and the classic builder's RUN containers reach:

* a local flat repository (dpkg-deb and apt-ftparchive, unsigned, ``trusted=yes``) where a test
  publishes a newer version of a package (the ``local_archive`` fixture, conftest.py);
* Debian's archives frozen as the test first saw them (``FrozenMirror``): a test that compares
  images with their archives then reads only what it published itself, however Debian's
  archives move while it runs."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
PROBE = "lambda-fresh-probe"
OUTDATED_EXIT = 14
EPOCH = 1704067200  # the probe package's file times
DEBIAN = "http://deb.debian.org"


def make_deb(pool: Path, version: str, work: Path) -> None:
    """An arch:all package ``PROBE`` at ``version`` in ``pool``, the same bytes every time (so
    the same archive state, and the same cached base, on the next run of the test)."""
    root = work / f"{PROBE}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {PROBE}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: lambda-base-images tests <tests@example.invalid>\n"
        "Description: a package whose newer version a test publishes\n"
    )
    (root / "usr" / "share" / PROBE).mkdir(parents=True)
    (root / "usr" / "share" / PROBE / "version").write_text(version + "\n")
    deb = pool / f"{PROBE}_{version}_all.deb"
    for path in [root, *root.rglob("*")]:
        os.utime(path, (EPOCH, EPOCH), follow_symlinks=False)
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)],
        check=True,
        capture_output=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)},
    )


def publish_repo(repo: Path) -> None:
    """Packages and Release of a flat repository (apt-ftparchive, as a small archive does)."""
    packages = subprocess.run(
        ["apt-ftparchive", "packages", "."], cwd=repo, check=True, capture_output=True
    )
    (repo / "Packages").write_bytes(packages.stdout)
    release = subprocess.run(
        ["apt-ftparchive", "release", "."], cwd=repo, check=True, capture_output=True
    )
    (repo / "Release").write_bytes(release.stdout)


def probe_matrix(matrix_text: str, archive: str, debian: str, runtime: str) -> str:
    """runtimes.yaml with Debian 12's archives read through ``debian`` (a FrozenMirror URL),
    the local archive at ``archive`` added to them, and ``PROBE`` installed in ``runtime``."""
    mirror = "        mirror: http://deb.debian.org/debian\n"
    at = matrix_text.index(mirror)  # debian12's, the first operating system that has one
    text = (
        matrix_text[:at]
        + f"        mirror: {debian}/debian\n        security_mirror: {debian}/debian-security\n"
        + matrix_text[at + len(mirror) :]
    )
    text = text.replace(
        "include: [ca-certificates]",
        "include: [ca-certificates]\n        extra_archives:\n"
        f"          - {{uri: '{archive}', suite: ./, trusted: true}}",
        1,  # debian12's
    )
    start = text.index(f"  - id: {runtime}\n")
    at = text.index("      apt: [", start)
    return text[:at] + f"      apt: [{PROBE}, " + text[at + len("      apt: [") :]


def _server(host: str, port: int, handler: Any) -> ThreadingHTTPServer:
    """An HTTP server on ``port``, or on any free port when that one is taken. A fixed port
    keeps the archive's URL — part of a base's identity — the same from one run to the next,
    so a warm machine finds the bases it made before."""
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError:
        return ThreadingHTTPServer((host, 0), handler)


@contextmanager
def _serving(httpd: ThreadingHTTPServer) -> Iterator[int]:
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def serve_archive(engine: Any, repo: Path, port: int = 0) -> Iterator[str]:
    """Serve ``repo`` over http on the Docker bridge's gateway; yield its URL."""
    if shutil.which("apt-ftparchive") is None:
        raise RuntimeError("apt-ftparchive is missing (apt-get install apt-utils; scripts/setup)")
    gateway = bridge_gateway(engine)
    handler = partial(SimpleHTTPRequestHandler, directory=str(repo))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    with _serving(_server(gateway, port, handler)) as bound:
        yield f"http://{gateway}:{bound}/"


class _FrozenHandler(BaseHTTPRequestHandler):
    """GET and HEAD of ``/<path>`` answered with ``DEBIAN/<path>``; a suite's Release files
    (InRelease, Release, Release.gpg) as first answered, every later time. Everything else apt
    reads is named by its content (indices by hash, pool files by name and version), so with
    the Release files frozen the whole archive stays as it was."""

    frozen: dict[str, tuple[int, bytes]]
    lock: threading.Lock

    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, *, body: bool) -> None:
        name = self.path.rsplit("/", 1)[-1]
        if name in ("InRelease", "Release", "Release.gpg"):
            with self.lock:
                if self.path not in self.frozen:
                    got = requests.get(DEBIAN + self.path, timeout=60)
                    self.frozen[self.path] = (got.status_code, got.content)
                status, data = self.frozen[self.path]
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)
            return
        with requests.get(DEBIAN + self.path, timeout=120, stream=True) as got:
            self.send_response(got.status_code)
            length = got.headers.get("Content-Length")
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            if body:
                for chunk in got.iter_content(1 << 20):
                    self.wfile.write(chunk)


@contextmanager
def frozen_debian(engine: Any, port: int = 0) -> Iterator[str]:
    """deb.debian.org frozen as first seen (``_FrozenHandler``), on the bridge's gateway; yields
    its URL, under which ``debian`` and ``debian-security`` are Debian's own two archives."""
    handler = type("Frozen", (_FrozenHandler,), {"frozen": {}, "lock": threading.Lock()})
    with _serving(_server(bridge_gateway(engine), port, handler)) as bound:
        yield f"http://{bridge_gateway(engine)}:{bound}"


def bridge_gateway(engine: Any) -> str:
    """The host's address on the engine's default bridge. An engine that chose the bridge's
    subnet itself may list only the subnet (no "Gateway"); its gateway is then the subnet's
    first address, the one the engine gives its bridge device."""
    config = engine.networks.get("bridge").attrs["IPAM"]["Config"][0]
    if config.get("Gateway"):
        return str(config["Gateway"])
    return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def dpkg_query(engine: Any, image: str) -> dict[str, str]:
    """Installed packages as dpkg-query inside the image lists them."""
    output: bytes = engine.containers.run(
        image,
        entrypoint=["dpkg-query"],
        command=["-W", "-f=${db:Status-Abbrev} ${Package} ${Version}\n"],
        remove=True,
        network_disabled=True,
    )
    installed = {}
    for line in output.decode().splitlines():
        status, name, version = line.split()
        if status == "ii":
            installed[name] = version
    return installed
