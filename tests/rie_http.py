"""Talking to a function container's invoke endpoint, as a user does after `docker run -p`."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from typing import Any

import pytest


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
