"""Function containers never outlive the emulator that started them: a SIGTERM of `invoke`
removes its container, and one left by a SIGKILLed `invoke` is removed by the next run."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_runner import command
from conftest import BuiltImages

from pipeline.emulator import CONTAINER_LABEL
from pipeline.emulator.container import OWNER_LABEL

pytestmark = pytest.mark.cells("provided.debian12/x86_64")
GUARD = 300.0  # seconds to wait for a line or an exit at most: a hang fails the test

HOLDING_BOOTSTRAP = r"""#!/bin/sh
# Answers each event with itself, except one asking to hold: that one never ends.
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  EVENT="$(curl -sS -D /tmp/headers "$API/invocation/next")"
  ID="$(grep -i '^Lambda-Runtime-Aws-Request-Id:' /tmp/headers | cut -d' ' -f2 | tr -d '\r')"
  case "$EVENT" in
    *hold*) echo "holding $ID" >&2; sleep 600 ;;
  esac
  curl -sS -X POST "$API/invocation/$ID/response" --data-binary "$EVENT" >/dev/null
done
"""


@pytest.fixture(scope="module")
def holding_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hold") / "code"
    root.mkdir()
    root.chmod(0o755)
    bootstrap = root / "bootstrap"
    bootstrap.write_text(textwrap.dedent(HOLDING_BOOTSTRAP).lstrip("\n"))
    bootstrap.chmod(0o755)
    return root


@pytest.fixture
def containers_of(engine: Any) -> Iterator[Callable[[subprocess.Popen[str]], list[Any]]]:
    """``containers_of(process)``: the function containers a process of this test started
    (by their owner label; other runs' containers on the same engine are left alone)."""
    pids: set[str] = set()

    def owned(pids: set[str]) -> list[Any]:
        found = engine.containers.list(all=True, filters={"label": CONTAINER_LABEL})
        return [
            c for c in found if ([*c.labels.get(OWNER_LABEL, "").split("/"), "", ""])[2] in pids
        ]

    def of(process: subprocess.Popen[str]) -> list[Any]:
        pids.add(str(process.pid))
        return owned({str(process.pid)})

    yield of
    for container in owned(pids):  # leave nothing behind even when the test failed
        container.remove(force=True)


def start_invoke(image: str, code: Path, event: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command("invoke", image, "--handler", "x", "--code", str(code), "--timeout", "600",
         "--event", json.dumps(event)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_line(proc: subprocess.Popen[str], fragment: str) -> None:
    """Read the process's stderr until a line holds ``fragment``."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen = []
    while True:
        line = lines.get(timeout=GUARD)
        if line is None:
            raise AssertionError(f"invoke ended before {fragment!r}: {''.join(seen)}")
        seen.append(line)
        if fragment in line:
            return


@pytest.mark.engine
@pytest.mark.slow
def test_a_sigkilled_invoke_leaves_a_container_that_the_next_run_removes(
    built: BuiltImages,
    holding_code: Path,
    containers_of: Callable[[subprocess.Popen[str]], list[Any]],
) -> None:
    image = built("provided.debian12")["x86_64"].image_tag
    killed = start_invoke(image, holding_code, {"hold": True})
    try:
        wait_for_line(killed, "holding")
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(GUARD)
    assert len(containers_of(killed)) == 1  # mid-invocation, no process left to remove it

    proc = start_invoke(image, holding_code, {"n": 1})
    out, err = proc.communicate(timeout=GUARD)
    assert proc.returncode == 0, err
    assert json.loads(out) == {"n": 1}
    assert "function container(s) left by a stopped emulator" in err
    assert containers_of(killed) == []
    assert containers_of(proc) == []


@pytest.mark.engine
@pytest.mark.slow
def test_a_sigterm_stops_invoke_and_removes_its_container(
    built: BuiltImages,
    holding_code: Path,
    containers_of: Callable[[subprocess.Popen[str]], list[Any]],
) -> None:
    image = built("provided.debian12")["x86_64"].image_tag
    proc = start_invoke(image, holding_code, {"hold": True})
    try:
        wait_for_line(proc, "holding")
        assert len(containers_of(proc)) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(GUARD)
    assert proc.returncode == 130
    assert containers_of(proc) == []
