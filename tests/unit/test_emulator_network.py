"""Where the function's container reaches its Runtime API (emulator/network.py), told from what
the engine says about itself: no engine, no network."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from pipeline.emulator.network import find_address

# Not an address of this host (TEST-NET-2, RFC 5737): a bridge that is not ours.
ELSEWHERE = "198.51.100.1"


class Adapter:
    def __init__(self, socket_path: str | None) -> None:
        if socket_path is not None:
            self.socket_path = socket_path


class Network:
    def __init__(self, gateway: str) -> None:
        self.attrs = {"IPAM": {"Config": [{"Subnet": "fd00::/64"}, {"Gateway": gateway}]}}


class Engine:
    """What find_address asks of a docker client: its address, its bridge and its info."""

    def __init__(self, base_url: str, gateway: str, system: str = "Debian GNU/Linux 12") -> None:
        local = "http+docker://localhost"
        socket_path = base_url.removeprefix(local) if base_url.startswith(local) else None
        self.api = type("Api", (), {})()
        self.api.base_url = base_url if socket_path is None else "http+docker://localhost"
        self.api.get_adapter = lambda url: Adapter(socket_path)
        self.networks = type("Networks", (), {"get": staticmethod(lambda name: Network(gateway))})
        self.system = system

    def info(self) -> dict[str, Any]:
        return {"OperatingSystem": self.system}


def test_a_configured_address_is_used_as_it_is() -> None:
    found = find_address(Engine("tcp://127.0.0.1:2375", "127.0.0.1"), "192.0.2.7")
    assert (found.listen, found.reach, found.why) == ("192.0.2.7", "192.0.2.7", "configured")
    assert found.hosts("runtime-ab") == {"runtime-ab": "192.0.2.7"}


def test_an_engine_on_this_host_is_reached_on_its_bridge_gateway() -> None:
    # 127.0.0.1 stands in for docker0's 172.17.0.1: an address of this host.
    found = find_address(Engine("tcp://127.0.0.1:2375", "127.0.0.1"))
    assert (found.listen, found.reach, found.why) == (
        "127.0.0.1",
        "127.0.0.1",
        "the engine's bridge",
    )


def test_docker_desktop_reaches_this_host_through_host_gateway() -> None:
    found = find_address(Engine("tcp://127.0.0.1:2375", ELSEWHERE, "Docker Desktop"))
    assert (found.listen, found.reach) == ("127.0.0.1", "host-gateway")


def test_a_remote_engine_with_the_same_bridge_address_as_ours_is_reached_by_the_route() -> None:
    """A remote engine whose bridge gateway happens to be an address of this host too (both
    172.17.0.1, typically) must not be taken for a local one."""
    found = find_address(Engine("tcp://192.0.2.10:2376", "127.0.0.1"))
    assert found.why == "this host's route to the engine"
    assert found.listen != "127.0.0.1" and found.listen == found.reach


def test_an_engine_whose_socket_is_served_from_our_namespace_is_reached_on_its_bridge(
    tmp_path: Path,
) -> None:
    """The socket's peer (here this very process) shares our network namespace, so the bridge
    gateway is on this host; an engine in another namespace is tests/engine/test_emulator.py's."""
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(4)
        found = find_address(Engine(f"http+docker://localhost{path}", "127.0.0.1"))
    assert (found.listen, found.why) == ("127.0.0.1", "the engine's bridge")
