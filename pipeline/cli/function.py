"""Local invocation: invoke and serve one function image through the Runtime API emulator, with
the function's options as Lambda (and AWS's emulator, and ``sam local``) take them."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from .. import log
from ..emulator import FunctionConfig, check_code_dir, check_timeout, read_event
from ..emulator.options import check_function_name, function_environment
from ..errors import InvocationError
from ..orchestrate import local
from ..settings import Settings
from .group import cli

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = (
    click.option("--handler", help="The handler (the image's CMD when left out)."),
    click.option(
        "--code", type=click.Path(path_type=Path, file_okay=False, exists=True),
        help="Function code, mounted read-only at /var/task.",
    ),
    click.option(
        "--timeout", type=float, default=300.0,
        help="Seconds per invocation, more than 0 and at most 900 (Lambda's limit).",
    ),
    click.option(
        "--memory", type=click.IntRange(128, 10240), default=3008,
        help="Memory limit in MB (128 to 10240, as Lambda allows).",
    ),
    click.option(
        "--function-name", default="test_function",
        help="The function's name (AWS_LAMBDA_FUNCTION_NAME, the ARN, the log group).",
    ),
    click.option(
        "--env", "env_pairs", multiple=True, metavar="KEY=VALUE",
        help="A variable of the function (repeatable; the value may contain '=').",
    ),
    click.option(
        "--env-file", type=click.Path(path_type=Path, dir_okay=False),
        help="Variables from a file of KEY=VALUE lines (# comments); --env wins.",
    ),
    click.option(
        "--layer", "layers", multiple=True,
        type=click.Path(path_type=Path, file_okay=False, exists=True),
        help="A layer's folder (repeatable): merged in order into a read-only /opt.",
    ),
)  # fmt: skip


def function_options(f: F) -> F:
    """The function's configuration; the command receives it as one ``function`` argument."""
    for option in reversed(_OPTIONS):
        f = option(f)

    @functools.wraps(f)
    def with_function(
        *args: Any, image: str, handler: str | None, code: Path | None,
        timeout: float, memory: int, function_name: str, env_pairs: tuple[str, ...],
        env_file: Path | None, layers: tuple[Path, ...], **kwargs: Any,
    ) -> Any:  # fmt: skip
        settings = click.get_current_context().find_object(Settings)
        environ = settings.environ if settings is not None else {}
        check_timeout(timeout)
        if code is not None:
            check_code_dir(code)
        function = FunctionConfig(
            image=image, handler=handler, code=code, timeout=timeout, memory_mb=memory,
            function_name=check_function_name(function_name),
            environment=function_environment(env_pairs, env_file, environ),
            layers=tuple(layers),
        )  # fmt: skip
        return f(*args, function=function, **kwargs)

    return cast(F, with_function)


@cli.command()
@click.argument("image")
@function_options
@click.option("--event", default="{}", help="The event: JSON, or @FILE.")
@click.pass_obj
def invoke(settings: Settings, function: FunctionConfig, event: str) -> None:
    """Invoke a function image once through the Runtime API emulator; print its response."""
    payload = read_event(event)
    result = local.invoke(settings, function, payload)
    click.echo(result.payload.decode(errors="replace"))
    if not result.ok:
        raise InvocationError(f"{result.error_type}: {result.error_message()}")


@cli.command()
@click.argument("image")
@function_options
@click.option(
    "--port", type=click.IntRange(0, 65535), default=9000,
    help="Port of the invoke endpoint on 127.0.0.1 (0: any free port).",
)  # fmt: skip
@click.pass_obj
def serve(settings: Settings, function: FunctionConfig, port: int) -> None:
    """Serve POST /2015-03-31/functions/function/invocations for a function image until Ctrl-C."""

    def ready(url: str) -> None:
        click.echo(url)
        sys.stdout.flush()
        log.info(f"invoke with: curl -XPOST {url} -d '{{}}'")

    local.serve_function(settings, function, port, ready)
