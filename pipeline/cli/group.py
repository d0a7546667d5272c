"""The ``lambda-images`` group and its global options (``--matrix``, ``--work``, ``--today``),
folded into the Settings every command receives; its help is laid out by show/help.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..settings import Settings
from ..show.help import Sections
from .options import written_folder


@click.group(
    cls=Sections, context_settings={"help_option_names": ["-h", "--help"], "show_default": True}
)
@click.version_option(__version__, prog_name="lambda-images")
@click.option(
    "--matrix", type=click.Path(path_type=Path, dir_okay=False),
    help="The runtime matrix. [default: $LAMBDA_IMAGES_MATRIX, or runtimes.yaml]",
)  # fmt: skip
@click.option(
    "--work", type=click.Path(path_type=Path, file_okay=False), callback=written_folder,
    help="Work directory for contexts, records, snapshots. [default: $LAMBDA_IMAGES_WORK, or out]",
)  # fmt: skip
@click.option(
    "--today", type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Decide deprecation as of this date (YYYY-MM-DD). [default: today]",
)  # fmt: skip
@click.pass_context
def cli(
    ctx: click.Context, matrix: Path | None, work: Path | None, today: dt.datetime | None
) -> None:
    """Build, test, snapshot and publish base container images for AWS Lambda runtimes."""
    settings = ctx.obj if isinstance(ctx.obj, Settings) else Settings.from_environ()
    given: dict[str, Any] = {"matrix": matrix, "work": work, "today": today and today.date()}
    ctx.obj = dataclasses.replace(settings, **{k: v for k, v in given.items() if v is not None})
