"""Timestamps as reproducible outputs write them (the epoch itself is ``Settings.epoch``)."""

from __future__ import annotations

import datetime as dt


def iso8601(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
