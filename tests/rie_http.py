"""Talking to a function container's invoke endpoint, as a user does after `docker run -p`:
`docker run -d -p 127.0.0.1::8080 IMAGE …` and a POST to the invoke URL, as AWS's guides test a
function image locally (the image's entrypoint starts AWS's runtime interface emulator, which
serves `/2015-03-31/functions/function/invocations` on port 8080). The host port is left to the
engine, so that several checkouts can run this at once."""

from __future__ import annotations

import contextlib
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from pipeline.emulator import INVOKE_PATH

LABEL = "lambda-base-images.test"


def post_when_listening(url: str, body: bytes, container: Any) -> bytes:
    """POST once the RIE listens. Until it does, the engine's port proxy takes the connection
    and drops it; that is retried, anything else is an answer or a failure. A bounded wait for
    readiness, not a timing assertion."""
    for _ in range(240):
        request = urllib.request.Request(url, data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                answer: bytes = response.read()
                return answer
        except urllib.error.HTTPError as exc:
            pytest.fail(f"the invoke URL answered HTTP {exc.code}: {exc.read()!r}")
        except (urllib.error.URLError, ConnectionError, http.client.RemoteDisconnected) as exc:
            reason = getattr(exc, "reason", exc)
            if not isinstance(reason, ConnectionError | http.client.RemoteDisconnected):
                raise
            container.reload()
            if container.status != "running":
                logs = container.logs().decode(errors="replace")
                pytest.fail(f"the container stopped before answering:\n{logs}")
            time.sleep(0.5)
    pytest.fail(f"nothing listened on {url}")


def logs_once_they_hold(container: Any, text: str) -> str:
    """The container's log once it holds ``text``. The RIE writes a request's END line after it
    has sent the answer, so a log read right after the answer may not hold it yet: a bounded
    wait for the line, not a timing assertion."""
    logs = ""
    for _ in range(60):
        logs = container.logs().decode(errors="replace")
        if text in logs:
            break
        time.sleep(0.5)
    return logs


@contextlib.contextmanager
def published_port(
    engine: Any,
    image: str,
    *,
    command: Sequence[str] | None = None,
    entrypoint: Sequence[str] | None = None,
    volumes: dict[str, dict[str, str]] | None = None,
    label: str,
) -> Iterator[tuple[Any, str]]:
    """`docker run -d -p 127.0.0.1::8080 [--entrypoint …] IMAGE [COMMAND…]`: the container and
    its invoke URL; the container is removed on the way out."""
    container = engine.containers.run(
        image,
        command=list(command) if command is not None else None,
        entrypoint=list(entrypoint) if entrypoint is not None else None,
        detach=True,
        ports={"8080/tcp": ("127.0.0.1", None)},
        volumes=volumes or {},
        labels={LABEL: label},
    )
    try:
        container.reload()
        port = container.ports["8080/tcp"][0]["HostPort"]
        yield container, f"http://127.0.0.1:{port}{INVOKE_PATH}"
    finally:
        container.remove(force=True)


def invoke_through_port(
    engine: Any, image: str, event: Any, *, label: str, **run: Any
) -> tuple[Any, str]:
    """Run ``image`` with its port published, POST ``event`` once and return the decoded answer
    and the container's log."""
    with published_port(engine, image, label=label, **run) as (container, url):
        answer = post_when_listening(url, json.dumps(event).encode(), container)
        logs = container.logs().decode(errors="replace")
    return json.loads(answer), logs
