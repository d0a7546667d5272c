"""Local invocation: invoke and serve one function image through the Runtime API emulator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .. import orchestrate as do
from .. import show
from ..errors import InvocationError
from ..settings import Settings
from .group import cli
from .options import event_option, function_options

if TYPE_CHECKING:
    from ..emulator import FunctionConfig


@cli.command()
@function_options
@event_option
@click.pass_obj
def invoke(settings: Settings, function: FunctionConfig, payload: bytes) -> None:
    """Invoke a function image once, as Lambda runs it; print its response."""
    result = do.invoke(settings, function, payload)
    click.echo(result.payload.decode(errors="replace"))
    if not result.ok:
        raise InvocationError(f"{result.error_type}: {result.error_message()}")


@cli.command()
@function_options
@click.option(
    "--port", type=click.IntRange(0, 65535), default=9000,
    help="Port of the invoke endpoint on 127.0.0.1 (0: any free port).",
)  # fmt: skip
@click.pass_obj
def serve(settings: Settings, function: FunctionConfig, port: int) -> None:
    """Serve a function image's invoke endpoint until Ctrl-C.

    POST /2015-03-31/functions/function/invocations, as AWS's emulator serves it."""
    do.serve_function(settings, function, port, show.serving)
