"""The function's container: started with the settings Lambda uses, watched, logged, removed.

Lambda's settings: a read-only root filesystem, a writable ``/tmp``, a non-root user, a memory
limit, the ``AWS_LAMBDA_*`` variables and the handler as the command; the code at ``/var/task``
and the layers at ``/opt``, both read-only. The container is on the engine's default bridge
network, as ``docker run`` puts it, and finds its Runtime API under a name of its own mapped in
its ``/etc/hosts`` (network.py: which address, on which engine).

Every container carries the ``lambda-images.emulator`` label and an owner label naming the
process that started it; the engine removes it when it exits (``auto_remove``), and a process
killed before it could stop its container leaves one that the next emulator on this host removes
(``remove_stale_containers``). Exit status and output are requested before the container starts,
so a container that exits at once is not removed before they are read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import docker.errors
import docker.types
import requests

from .. import log
from ..errors import EngineError
from .function import REGION, FunctionConfig

TMP_SIZE_MB: Final = 512  # Lambda's default ephemeral storage
CONTAINER_LABEL: Final = "lambda-images.emulator"
OWNER_LABEL: Final = "lambda-images.emulator.owner"  # host/boot id/pid/process start time

LogSink = Callable[[str], None]


class StartFailed(Exception):
    """The engine created the function's container but could not start its entrypoint."""


def image_platform(client: Any, image: str) -> str | None:
    """The image's ``os/architecture``, to run it as built (None when the image does not say)."""
    try:
        attrs = client.images.get(image).attrs
    except docker.errors.ImageNotFound:
        msg = f"no image {image!r} in the Docker Engine; build or pull it first"
        raise EngineError(msg) from None
    except docker.errors.APIError as exc:
        raise EngineError(f"inspecting {image}: {exc.explanation or exc}") from None
    architecture = attrs.get("Architecture") or ""
    return f"{attrs.get('Os') or 'linux'}/{architecture}" if architecture else None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or None when there is none; with
    the pid it names one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def owner() -> str:
    """This process, as the owner label names it."""
    return f"{socket.gethostname()}/{_boot_id()}/{os.getpid()}/{_process_start(os.getpid())}"


def is_stale(label: str) -> bool:
    """True when the owner label names a process of this host that no longer runs."""
    host, boot, pid, start = [*label.split("/"), "", "", ""][:4]
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's engine client: not ours to judge
    if boot != _boot_id():
        return True
    return _process_start(int(pid)) != start


def remove_stale_containers(client: Any) -> list[str]:
    """Remove function containers whose emulator process died (SIGKILL, a crash, a reboot);
    return their names. Containers of emulators still running are left alone."""
    removed: list[str] = []
    try:
        found = client.containers.list(all=True, filters={"label": OWNER_LABEL})
    except (docker.errors.APIError, requests.exceptions.RequestException):
        return removed
    for container in found:
        if is_stale((container.labels or {}).get(OWNER_LABEL, "")):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
                removed.append(container.name)
    if removed:
        log.info(f"removed {len(removed)} function container(s) left by a stopped emulator")
    return removed


def lambda_environment(config: FunctionConfig, runtime_api: str) -> dict[str, str]:
    """The variables Lambda sets for a function, then the function's own."""
    env = {
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": config.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"$LATEST/{uuid.uuid4().hex}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }
    env.update(config.environment)
    return env


def start_container(
    client: Any,
    config: FunctionConfig,
    platform: str | None,
    runtime_api: str,
    sink: LogSink,
    opt: Path | None = None,
    hosts: Mapping[str, str] | None = None,
) -> FunctionContainer:
    """Create and start the function's container talking to ``runtime_api`` (``name:port``,
    ``hosts`` mapping the name to an address), with ``opt`` (the merged layers) mounted at /opt.

    EngineError when the engine cannot create it; StartFailed when its entrypoint cannot start.
    """
    # Mounts, not volumes: the engine gets the source path as a field of its own, where a
    # "source:target:mode" string would read a ':' in the path (--code ./a:b) as a separator.
    mounts = []
    if config.code is not None:
        mounts.append(_read_only(config.code.resolve(), "/var/task"))
    if opt is not None:
        mounts.append(_read_only(opt, "/opt"))
    command = [config.handler] if config.handler else None
    flags = ["--read-only"] if config.read_only else []
    added = [f"--add-host={name}:{address}" for name, address in (hosts or {}).items()]
    log.command(["docker", "run", *flags, *added, config.image, *(command or [])])
    try:
        container = client.containers.create(
            config.image,
            command=command,
            environment=lambda_environment(config, runtime_api),
            extra_hosts=dict(hosts or {}),
            read_only=config.read_only,
            # Lambda's /tmp allows running what a function puts there (Docker's tmpfs default is
            # noexec): AWS's Java runtime client unpacks its native library there and loads it.
            tmpfs={"/tmp": f"rw,exec,nosuid,nodev,size={TMP_SIZE_MB}m,mode=1777"},
            user=config.user,
            mem_limit=f"{config.memory_mb}m",
            memswap_limit=f"{config.memory_mb}m",
            mounts=mounts,
            labels={CONTAINER_LABEL: config.function_name, OWNER_LABEL: owner()},
            platform=platform,
            # The conformance write check reads the container's changes after it stops.
            auto_remove=config.read_only,
        )
    except docker.errors.APIError as exc:
        raise EngineError(
            f"creating a container of {config.image}: {exc.explanation or exc}"
        ) from None
    try:
        waiter = _wait_request(client, container.id)
        output = container.attach(stdout=True, stderr=True, stream=True, logs=True)
        container.start()
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        # The image itself cannot start (ENTRYPOINT missing, not executable…): on Lambda
        # this is the function's error, not the emulator's.
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
        reason = getattr(exc, "explanation", None) or exc
        raise StartFailed(str(reason)) from None
    return FunctionContainer(container, sink, waiter, output)


def _read_only(source: Path, target: str) -> docker.types.Mount:
    return docker.types.Mount(target, str(source), type="bind", read_only=True)


def _wait_request(client: Any, container_id: str) -> Any:
    """``POST /containers/{id}/wait?condition=next-exit``, sent before the container starts:
    the engine answers the headers once the wait is registered and the exit status when the
    container stops, even if it is removed right after (as ``docker run --rm`` does)."""
    api = client.api
    url = f"{api.base_url}/v{api.api_version}/containers/{quote(container_id, safe='')}/wait"
    response = api.post(url, params={"condition": "next-exit"}, stream=True, timeout=None)
    if response.status_code != 200:
        response.close()
        raise docker.errors.APIError(f"wait for {container_id[:12]}: HTTP {response.status_code}")
    return response


class FunctionContainer:
    """A started container: ``exited`` is set (with ``exit_code``) once it stops; its output
    goes to the sink line by line."""

    def __init__(self, container: Any, sink: LogSink, waiter: Any, output: Iterable[bytes]) -> None:
        self.container = container
        self.sink = sink
        self._waiter = waiter
        self._output = output
        self.exited = threading.Event()
        self.exit_code: int | None = None
        self._threads = [
            threading.Thread(target=target, name=name, daemon=True)
            for target, name in ((self._watch, "container-wait"), (self._logs, "container-logs"))
        ]
        for thread in self._threads:
            thread.start()

    def _watch(self) -> None:
        code = -1
        try:
            code = int(json.loads(self._waiter.content or b"{}").get("StatusCode", -1))
        except (ValueError, AttributeError, requests.exceptions.RequestException):
            pass
        finally:
            self._waiter.close()
        self.exit_code = code
        self.exited.set()

    def _logs(self) -> None:
        since = dt.datetime.now(dt.UTC)
        chunks: Iterable[bytes] = self._output
        while True:
            try:
                for chunk in chunks:
                    since = dt.datetime.now(dt.UTC)
                    # Runtimes end the lines of one log record with \r (CloudWatch keeps them
                    # together).
                    for line in chunk.decode(errors="replace").replace("\r", "\n").splitlines():
                        self.sink(line)
                return
            except TimeoutError:
                # The attached stream has the client's read timeout; a function silent for
                # that long is followed on through the logs endpoint, which has none.
                if self.exited.is_set():
                    return
                try:
                    chunks = self.container.logs(stream=True, follow=True, since=since)
                except (docker.errors.APIError, requests.exceptions.RequestException):
                    return
            except (OSError, docker.errors.APIError, requests.exceptions.RequestException):
                return

    def kill(self) -> None:
        with contextlib.suppress(docker.errors.APIError):  # already gone
            self.container.kill()

    def remove(self, *, keep_changes: bool) -> list[dict[str, Any]]:
        """Kill and remove the container (waits for it); its filesystem changes if asked."""
        changes: list[dict[str, Any]] = []
        self.kill()
        self.exited.wait(30)
        if keep_changes:
            with contextlib.suppress(docker.errors.APIError):
                changes = self.container.diff() or []
        with contextlib.suppress(docker.errors.APIError):
            self.container.remove(force=True)
        return changes

    def join(self) -> None:
        """Wait (a little) for the watching and logging threads to end."""
        for thread in self._threads:
            thread.join(5)
