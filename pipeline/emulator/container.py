"""The function's container: started with the settings Lambda uses, watched, logged, removed.

Lambda's settings: a read-only root filesystem, a writable ``/tmp``, a non-root user, a memory
limit, the ``AWS_LAMBDA_*`` variables and the handler as the command. The container shares the
host's network (``network_mode="host"``) to reach its Runtime API on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable
from typing import Any, Final

import docker.errors
import requests

from .. import log
from ..errors import EngineError
from .function import REGION, FunctionConfig

TMP_SIZE_MB: Final = 512  # Lambda's default ephemeral storage
CONTAINER_LABEL: Final = "lambda-images.emulator"

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
    client: Any, config: FunctionConfig, platform: str | None, runtime_api: str, sink: LogSink
) -> FunctionContainer:
    """Create and start the function's container talking to ``runtime_api``.

    EngineError when the engine cannot create it; StartFailed when its entrypoint cannot start.
    """
    volumes = {}
    if config.code is not None:
        volumes[str(config.code.resolve())] = {"bind": "/var/task", "mode": "ro"}
    command = [config.handler] if config.handler else None
    flags = ["--read-only"] if config.read_only else []
    log.command(["docker", "run", *flags, "--network=host", config.image, *(command or [])])
    try:
        container = client.containers.create(
            config.image,
            command=command,
            environment=lambda_environment(config, runtime_api),
            network_mode="host",
            read_only=config.read_only,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={TMP_SIZE_MB}m,mode=1777"},
            user=config.user,
            mem_limit=f"{config.memory_mb}m",
            memswap_limit=f"{config.memory_mb}m",
            volumes=volumes,
            labels={CONTAINER_LABEL: config.function_name},
            platform=platform,
        )
    except docker.errors.APIError as exc:
        raise EngineError(
            f"creating a container of {config.image}: {exc.explanation or exc}"
        ) from None
    try:
        container.start()
    except docker.errors.APIError as exc:
        # The image itself cannot start (ENTRYPOINT missing, not executable…): on Lambda
        # this is the function's error, not the emulator's.
        container.remove(force=True)
        raise StartFailed(str(exc.explanation or exc)) from None
    return FunctionContainer(container, sink)


class FunctionContainer:
    """A started container: ``exited`` is set (with ``exit_code``) once it stops; its output
    goes to the sink line by line."""

    def __init__(self, container: Any, sink: LogSink) -> None:
        self.container = container
        self.sink = sink
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
        while True:
            try:
                code = int(self.container.wait().get("StatusCode", -1))
                break
            except requests.exceptions.ReadTimeout:
                continue  # a request timeout (when the client sets one), not the container
            except (docker.errors.APIError, requests.exceptions.RequestException):
                break
        self.exit_code = code
        self.exited.set()

    def _logs(self) -> None:
        try:
            for chunk in self.container.logs(stream=True, follow=True):
                # Runtimes end the lines of one log record with \r (CloudWatch keeps them together).
                for line in chunk.decode(errors="replace").replace("\r", "\n").splitlines():
                    self.sink(line)
        except (docker.errors.APIError, requests.exceptions.RequestException):
            pass

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
