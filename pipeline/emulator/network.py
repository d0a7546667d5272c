"""Where a function's container reaches its Runtime API, on any engine.

The function runs on the engine's default bridge network, as ``docker run`` runs it, never on the
host's: with Docker Desktop, a rootless engine or a remote ``DOCKER_HOST``, a container's
127.0.0.1 is not this host's. The Runtime API (served by this process) listens on one address of
this host, chosen so that the engine's containers can reach it:

1. ``LAMBDA_IMAGES_RUNTIME_API_HOST`` when it is set: an address of this host the containers
   reach (an engine on another machine behind NAT, a rootless engine without a default route);
2. the gateway of the engine's ``bridge`` network, when the engine runs in this host's network
   namespace (the usual Linux install): that address is on this host, and the containers on the
   bridge reach it directly;
3. 127.0.0.1 on Docker Desktop, whose ``host-gateway`` leads there from its virtual machine;
4. otherwise (an engine in another network namespace or machine: rootless, remote, in a VM), the
   address this host uses towards the engine's host (``tcp://HOST:PORT``), or for a socket the
   address of its default route: the containers' traffic leaves the engine's namespace and is
   routed to it.

The container finds the Runtime API under a name of its own, ``runtime-<32 hex digits>``, drawn
for each container and mapped in its ``/etc/hosts`` (``--add-host``); the runtime sends that name
in every request's ``Host`` header, and a request without it is refused. A process that is not
the function's (another local user, another container) can connect to the address but does not
know the name.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import docker.errors
import requests

from ..errors import EngineError

# Any address outside this host: a UDP socket "connected" to it names the source address of the
# default route (nothing is sent). TEST-NET-3, RFC 5737.
OUTSIDE: Final = "203.0.113.1"
HOST_GATEWAY: Final = "host-gateway"  # the engine's name for "the host", as --add-host takes it


@dataclass(frozen=True, kw_only=True)
class RuntimeAPIAddress:
    listen: str  # where the Runtime API listens on this host
    reach: str  # what the container's name for it maps to: an address, or "host-gateway"
    why: str  # which rule chose it, for the log

    def hosts(self, name: str) -> dict[str, str]:
        """The container's extra /etc/hosts entry for ``name``."""
        return {name: self.reach}


def find_address(client: Any, configured: str = "") -> RuntimeAPIAddress:
    """Where the Runtime API of a function run by ``client``'s engine listens (the rules in the
    module's docstring); ``configured`` is Settings.runtime_api_host."""
    if configured:
        return RuntimeAPIAddress(listen=configured, reach=configured, why="configured")
    socket_path = _socket_path(client)
    engine_host = None if socket_path else urlsplit(str(client.api.base_url)).hostname
    gateway = _bridge_gateway(client)
    # Over TCP, an engine on another machine may well have the same bridge address as this one's.
    shared = _same_namespace(socket_path) if socket_path else _is_local(_resolve(engine_host))
    if gateway and shared is not False and _is_local(gateway):
        return RuntimeAPIAddress(listen=gateway, reach=gateway, why="the engine's bridge")
    if _info(client).get("OperatingSystem") == "Docker Desktop":
        return RuntimeAPIAddress(listen="127.0.0.1", reach=HOST_GATEWAY, why="Docker Desktop")
    local = (engine_host and _route_source(engine_host)) or _route_source(OUTSIDE)
    if local is None:
        msg = (
            "cannot tell which address of this host the engine's containers reach (no route "
            "to the engine); set LAMBDA_IMAGES_RUNTIME_API_HOST to one (docs/emulator.md)"
        )
        raise EngineError(msg)
    return RuntimeAPIAddress(listen=local, reach=local, why="this host's route to the engine")


def _socket_path(client: Any) -> str | None:
    """The engine's Unix socket, when the client talks to one (the SDK's adapter for it)."""
    adapter = client.api.get_adapter(client.api.base_url)
    path = getattr(adapter, "socket_path", None)
    return str(path) if path else None


def _bridge_gateway(client: Any) -> str | None:
    try:
        configs = client.networks.get("bridge").attrs.get("IPAM", {}).get("Config") or []
    except (docker.errors.APIError, requests.exceptions.RequestException):
        return None
    gateways = [str(c["Gateway"]) for c in configs if isinstance(c, dict) and c.get("Gateway")]
    with contextlib.suppress(ValueError):
        return next((g for g in gateways if ipaddress.ip_address(g).version == 4), None)
    return None


def _info(client: Any) -> dict[str, Any]:
    try:
        return dict(client.info())
    except (docker.errors.APIError, requests.exceptions.RequestException):
        return {}


def _same_namespace(socket_path: str) -> bool | None:
    """Whether the engine listening on ``socket_path`` shares this process's network namespace
    (its pid from the socket's peer credentials); None when that cannot be told (another pid
    namespace, not allowed to look, no such socket option)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
            peer.settimeout(5)
            peer.connect(socket_path.removeprefix("unix://"))
            pid = struct.unpack("3i", peer.getsockopt(socket.SOL_SOCKET, option, 12))[0]
        if pid <= 0:
            return None
        return os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
    except OSError:
        return None


def _resolve(host: str | None) -> str:
    """``host``'s IPv4 address, "" when it has none."""
    try:
        return socket.gethostbyname(host) if host else ""
    except OSError:
        return ""


def _is_local(address: str) -> bool:
    """True when ``address`` is one of this host's (a socket can be bound to it)."""
    if not address:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
        return True


def _route_source(host: str) -> str | None:
    """The address of this host that packets to ``host`` leave from (no packet is sent)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect((socket.gethostbyname(host), 9))
        return str(udp.getsockname()[0])
    return None
