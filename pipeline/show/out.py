"""Lines on stdout: what scripts read (tab-separated), one result a line."""

from __future__ import annotations

from collections.abc import Iterable

import click


def lines(items: Iterable[str]) -> None:
    for line in items:
        click.echo(line)
