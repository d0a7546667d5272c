"""A local apt repository for tests that need an archive to publish a newer version of an
installed package: a flat repository (dpkg-deb and apt-ftparchive, unsigned, ``trusted=yes``)
served on the Docker bridge's gateway address, which both the host (mmdebstrap) and the
classic builder's RUN containers reach. The ``local_archive`` fixture (conftest.py) serves it."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PROBE = "lambda-fresh-probe"
OUTDATED_EXIT = 14


def make_deb(pool: Path, version: str, work: Path) -> None:
    """An arch:all package ``PROBE`` at ``version`` in ``pool``."""
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
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
        check=True,
        capture_output=True,
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


def with_probe_archive(matrix_text: str, uri: str) -> str:
    """runtimes.yaml with ``PROBE`` installed in Debian 12's base, from the archive at ``uri``."""
    return matrix_text.replace(
        "include: [ca-certificates]",
        f"include: [ca-certificates, {PROBE}]\n        extra_archives:\n"
        f"          - {{uri: '{uri}', suite: ./, trusted: true}}",
        1,  # debian12's
    )


@contextmanager
def serve_archive(engine: Any, repo: Path) -> Iterator[str]:
    """Serve ``repo`` over http on the Docker bridge's gateway; yield its URL."""
    if shutil.which("apt-ftparchive") is None:
        raise RuntimeError("apt-ftparchive is missing (apt-get install apt-utils; scripts/setup)")
    gateway = bridge_gateway(engine)
    handler = partial(SimpleHTTPRequestHandler, directory=str(repo))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = ThreadingHTTPServer((gateway, 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://{gateway}:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


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


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``lambda-images ARGS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
