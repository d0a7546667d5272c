"""The ``lambda-images`` command: parse, call the conductor (pipeline/orchestrate), hand its
results to the one renderer (pipeline/show.py). group.py: the group and its global options;
options.py: shared options, every value resolved once; a module per command group
(matrix_commands, cells, release, function). Errors become one line and the exit code of their
kind (errors.py; the table is in the README)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from .. import log
from ..errors import LambdaImagesError, UsageError
from ..settings import Settings
from . import cells, function, matrix_commands, release
from .group import cli

__all__ = ["cells", "cli", "function", "main", "matrix_commands", "release"]


def main(argv: Sequence[str] | None = None) -> None:
    try:
        settings = Settings.from_environ()
    except LambdaImagesError as exc:
        log.error(str(exc))
        sys.exit(exc.return_code)
    log.configure(github_actions=settings.github_actions)
    try:
        cli.main(args=argv, prog_name="lambda-images", standalone_mode=False, obj=settings)
    except LambdaImagesError as exc:
        if settings.debug:
            raise
        log.error(str(exc))
        sys.exit(exc.return_code)
    except click.exceptions.NoArgsIsHelpError as exc:  # no command: the help, as --help
        click.echo(exc.ctx.get_help())
    except click.exceptions.Abort:
        log.error("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        # One line, like every other error: click's usage block would make it several.
        message = " ".join(exc.format_message().split())
        command = getattr(getattr(exc, "ctx", None), "command_path", "lambda-images")
        hint = f" (see `{command} --help`)" if isinstance(exc, click.UsageError) else ""
        log.error(f"{message}{hint}")
        sys.exit(UsageError.return_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
