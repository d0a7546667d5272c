"""What the emulator knows of a function: its configuration, Lambda's limits, its results.

Records and constants only, shared by the Runtime API, the execution environment and the invoke
endpoint; nothing here talks to Docker or the network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

FUNCTION_NAME: Final = "test_function"
ACCOUNT: Final = "012345678912"
REGION: Final = "us-east-1"
DEFAULT_TIMEOUT: Final = 300.0  # seconds, as AWS's emulator
MAX_TIMEOUT: Final = 900.0  # Lambda's longest function timeout
DEFAULT_MEMORY_MB: Final = 3008
# Lambda's sandbox user (sbx_user1051) has these ids.
LAMBDA_USER: Final = "993:990"
MAX_PAYLOAD: Final = 6 * 1024 * 1024  # synchronous invocation request and response limit


def function_arn(name: str = FUNCTION_NAME) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def error_payload(error_type: str, message: str) -> bytes:
    """Lambda's shape for an error that reaches the caller."""
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


def too_large_message(what: str, size: int) -> str:
    """Lambda's words for a ``what`` ("Request", "Response") payload over ``MAX_PAYLOAD``."""
    return (
        f"{what} payload size ({size} bytes) exceeded maximum allowed "
        f"payload size ({MAX_PAYLOAD} bytes)."
    )


@dataclass(frozen=True, kw_only=True)
class FunctionConfig:
    """How to run the function: what Lambda's function configuration would say."""

    image: str
    handler: str | None = None  # None: the image's CMD
    code: Path | None = None  # mounted read-only at /var/task
    timeout: float = DEFAULT_TIMEOUT
    memory_mb: int = DEFAULT_MEMORY_MB
    function_name: str = FUNCTION_NAME
    environment: Mapping[str, str] = field(default_factory=dict)
    layers: tuple[Path, ...] = ()  # merged in order into a read-only /opt
    read_only: bool = True  # False (and user "0") only for the conformance write check
    user: str = LAMBDA_USER


@dataclass(frozen=True, kw_only=True)
class InvokeResult:
    request_id: str
    payload: bytes
    error_type: str | None = None  # set when the function (or its runtime) failed

    @property
    def ok(self) -> bool:
        return self.error_type is None

    def error_message(self) -> str:
        try:
            data = json.loads(self.payload)
        except ValueError:
            return self.payload.decode(errors="replace")
        if isinstance(data, dict):
            return str(data.get("errorMessage", ""))
        return str(data)
