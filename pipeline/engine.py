"""The Docker Engine connection, and the host facts a build depends on (qemu binfmt)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from .errors import ConfigurationError, EngineError
from .matrix import Arch

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# How `platform.machine()` names the host's architecture → Lambda's name for it.
HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"  # where the engine is when DOCKER_HOST is unset


def connect(docker_host: str = "", timeout: int = 600) -> Any:
    """A docker.DockerClient that answered a ping, or an EngineError saying how to get one.
    ``docker_host`` is Settings.docker_host (DOCKER_HOST); empty means the default socket."""
    where = docker_host or DEFAULT_DOCKER_HOST
    try:
        client = docker.DockerClient(base_url=where, timeout=timeout)
    except ValueError as exc:  # urllib's parse of the address, e.g. tcp://[::1
        msg = f"DOCKER_HOST={where!r}: not a Docker Engine address ({exc})"
        raise ConfigurationError(msg) from None
    except docker.errors.DockerException as exc:
        raise EngineError(_unreachable(where, exc)) from None
    try:
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EngineError(_unreachable(where, exc)) from None
    return client


def _unreachable(where: str, exc: Exception) -> str:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return (
        f"cannot reach the Docker Engine at {where} ({reason}); start it "
        "(for example `sudo dockerd &`, or `sudo systemctl start docker`) or set DOCKER_HOST"
    )


def host_arch() -> str:
    return HOST_ARCH.get(platform.machine(), platform.machine())


def engine_arch(client: Any) -> str:
    """The engine's own architecture (Lambda's name): where a build stage runs natively."""
    machine = str(client.info().get("Architecture", ""))
    return HOST_ARCH.get(machine, machine)


def require_emulation(arch: Arch) -> None:
    """Fail early, with the fix, when a foreign-architecture build cannot run its RUN steps."""
    if arch.name == host_arch():
        return
    entry = BINFMT_DIR / f"qemu-{arch.uname}"
    try:
        enabled = entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        enabled = False
    if not enabled:
        msg = (
            f"building {arch.name} on a {host_arch()} host needs qemu binfmt for {arch.uname}, "
            f"and {entry} is not enabled: install qemu-user-static and binfmt-support "
            f"(apt-get install qemu-user-static binfmt-support), then `update-binfmts --enable "
            f"qemu-{arch.uname}`"
        )
        raise EngineError(msg)
