"""SOURCE_DATE_EPOCH: the one timestamp every reproducible output is stamped with."""

from __future__ import annotations

import datetime as dt
import os
from typing import Final

from .errors import ConfigurationError

# 2024-01-01T00:00:00Z: used when SOURCE_DATE_EPOCH is unset (or empty, which counts as unset).
DEFAULT_SOURCE_DATE_EPOCH: Final = 1704067200


def source_date_epoch() -> int:
    """The epoch in seconds; a malformed value is an error, never silently replaced."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return DEFAULT_SOURCE_DATE_EPOCH
    if not raw.isdigit():
        msg = f"SOURCE_DATE_EPOCH={raw!r}: expected a non-negative integer (seconds since 1970)"
        raise ConfigurationError(msg)
    return int(raw)


def iso8601(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
