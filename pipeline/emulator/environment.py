"""One Lambda execution environment: a function container, its Runtime API, one event at a time.

Invocations are served one at a time; concurrent callers queue. A container that exits is
started again, through init, for the next invocation; an invocation that times out kills it.
"""

from __future__ import annotations

import shutil
import threading
import time
from typing import Any, Final

from .. import log
from ..errors import EngineError
from .container import (
    FunctionContainer,
    LogSink,
    StartFailed,
    image_platform,
    remove_stale_containers,
    start_container,
)
from .function import MAX_PAYLOAD, FunctionConfig, InvokeResult, too_large_message
from .network import find_address
from .options import merge_layers
from .runtime_api import Invocation, RuntimeAPIServer, RuntimeState

TOO_LARGE: Final = "RequestTooLargeException"
SIGNALS: Final = {6: "aborted", 9: "killed", 11: "segmentation fault", 15: "terminated"}


class ExecutionEnvironment:
    """One execution environment: a function container and its Runtime API, one event at a time."""

    def __init__(
        self,
        config: FunctionConfig,
        client: Any,
        sink: LogSink | None = None,
        *,
        runtime_api_host: str = "",
    ) -> None:
        """``runtime_api_host``: Settings.runtime_api_host, where the Runtime API listens when
        set; else it is found from the engine (network.py)."""
        self.config = config
        self.client = client
        self.sink: LogSink = sink or (lambda line: log.detail(f"  {line}"))
        self._invoke_lock = threading.Lock()
        self._container: FunctionContainer | None = None
        self._state: RuntimeState | None = None
        self._server: RuntimeAPIServer | None = None
        self.inits = 0  # containers started (cold starts)
        self.changes: list[dict[str, Any]] = []  # filesystem changes of finished containers
        self.platform = image_platform(client, config.image)
        self.address = find_address(client, runtime_api_host)
        remove_stale_containers(client)
        # The layers, merged once for every container of this environment; removed on close.
        self._opt = merge_layers(config.layers) if config.layers else None

    # --- container lifecycle -------------------------------------------------------------------

    def _start(self) -> None:
        state = RuntimeState(self.config.timeout)
        try:
            server = RuntimeAPIServer(
                state, self.config.function_name, self._kill, listen=self.address.listen
            )
        except OSError as exc:
            where = f"{self.address.listen} ({self.address.why})"
            msg = f"the Runtime API cannot listen on {where}: {exc.strerror}; see docs/emulator.md"
            raise EngineError(msg) from None
        server.start()
        try:
            container = start_container(
                self.client, self.config, self.platform, server.runtime_api, self.sink,
                self._opt, self.address.hosts(server.name),
            )  # fmt: skip
        except (EngineError, StartFailed):
            server.stop()
            raise
        self._container, self._state, self._server = container, state, server
        self.inits += 1

    def _kill(self) -> None:
        container = self._container
        if container is not None:
            container.kill()

    def _stop(self) -> None:
        """Tear the current container and its Runtime API down (waits for them)."""
        container, state, server = self._container, self._state, self._server
        if container is not None:
            self.changes.extend(container.remove(keep_changes=not self.config.read_only))
        if state is not None:
            state.close()
        if server is not None:
            server.stop()
        self._container = self._state = self._server = None
        if container is not None:
            container.join()

    # --- invoking ------------------------------------------------------------------------------

    def invoke(self, payload: bytes, client_context: str | None = None) -> InvokeResult:
        """Run one event through the function; concurrent calls wait their turn."""
        with self._invoke_lock:
            if self._container is not None and self._container.exited.is_set():
                self._stop()  # died after the last invocation: init again
            invocation = Invocation(payload, client_context)
            if len(payload) > MAX_PAYLOAD:
                invocation.fail(TOO_LARGE, too_large_message("Request", len(payload)))
                return invocation.outcome()
            if self._container is None:
                try:
                    self._start()
                except StartFailed as exc:
                    message = f"RequestId: {invocation.request_id} Error: {exc}"
                    invocation.fail("Runtime.InvalidEntrypoint", message)
                    return invocation.outcome()
            return self._run(invocation)

    def _run(self, invocation: Invocation) -> InvokeResult:
        container, state = self._container, self._state
        assert container is not None and state is not None
        state.submit(invocation)
        # Init gets the function's timeout, and so does the invocation once the runtime has
        # picked it up (its deadline is the one the runtime was told in Lambda-Runtime-Deadline-Ms).
        init_end = time.monotonic() + self.config.timeout
        while not invocation.done.wait(0.05):
            if container.exited.is_set():
                self._container_exited(invocation, container, state)
                break
            if invocation.picked_up.is_set():
                remaining = invocation.deadline_ms / 1000 - time.time()
            else:
                remaining = init_end - time.monotonic()
            if remaining <= 0:
                self._timed_out(invocation)
                break
        return invocation.outcome()

    def _unreached(self, state: RuntimeState) -> None:
        """Say so when the runtime never reached its Runtime API: on an engine that cannot reach
        this host at the address chosen, every invocation ends that way."""
        if not state.contacted:
            where = f"{self.address.listen} ({self.address.why})"
            log.warning(
                f"the function's runtime never reached its Runtime API on {where}; if the "
                "engine's containers cannot reach this host there, set "
                "LAMBDA_IMAGES_RUNTIME_API_HOST (docs/emulator.md)"
            )

    def _container_exited(
        self, invocation: Invocation, container: FunctionContainer, state: RuntimeState
    ) -> None:
        self._unreached(state)
        # The init error, if the runtime posted one before exiting, is what Lambda reports.
        if state.init_error is not None and state.init_error_type is not None:
            invocation.finish(state.init_error, state.init_error_type)
        else:
            code = container.exit_code if container.exit_code is not None else -1
            # As Lambda words it: "exit status N", or "signal: killed" (out of memory, killed).
            if code > 128:
                reason = f"signal: {SIGNALS.get(code - 128, f'signal {code - 128}')}"
            else:
                reason = f"exit status {code}"
            message = (
                f"RequestId: {invocation.request_id} Error: Runtime exited with error: {reason}"
            )
            invocation.fail("Runtime.ExitError", message)
        self._stop()

    def _timed_out(self, invocation: Invocation) -> None:
        if self._state is not None:
            self._unreached(self._state)
        message = f"Task timed out after {self.config.timeout:.2f} seconds"
        if invocation.fail("Sandbox.Timedout", message):
            self._stop()  # Lambda ends the environment; the next invocation starts a new one

    def close(self) -> None:
        with self._invoke_lock:
            self._stop()
            if self._opt is not None:
                shutil.rmtree(self._opt, ignore_errors=True)
                self._opt = None

    def __enter__(self) -> ExecutionEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
