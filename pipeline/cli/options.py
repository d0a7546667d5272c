"""The commands' shared options, each value resolved once before any work (runtimes, registry,
git remote, path, function, event) into a frozen request of orchestrate/requests.py. A malformed
value is a usage error (exit 2) never echoing a secret; its checker loads only when it is given."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from ..errors import RegistryError, UsageError
from ..settings import Settings
from ..workdir import unwritable

if TYPE_CHECKING:
    from ..oci.registry import RegistryRef
    from ..orchestrate import Cells, Run

F = TypeVar("F", bound=Callable[..., Any])
ARCH_NAMES = ("x86_64", "arm64")  # matrix.ARCHES, without loading the matrix's reader (a test)


def together(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several option decorators as one, in the order they would be written."""
    return lambda f: functools.reduce(lambda g, d: d(g), reversed(decorators), f)


def settings() -> Settings:
    return cast(Settings, click.get_current_context().find_object(Settings))


def selected(settings: Settings, ids: Sequence[str], include_deprecated: bool = False,
             arches: Sequence[str] = ()) -> tuple[Run, Cells]:  # fmt: skip
    """The command's run and the cells it names (every runtime when none): unknown or deprecated
    runtimes are refused before the engine is needed."""
    from ..orchestrate import Cells, Run

    run = Run.open(settings)
    runtimes = tuple(run.select(ids, include_deprecated=include_deprecated))
    return run, Cells(runtimes=runtimes, arches=tuple(arches))


# Docker's (amd64) and the kernel's (aarch64) names too: matrix.Arch's docker and uname.
ARCH_ALIASES = {"amd64": "x86_64", "aarch64": "arm64"}
arch_option = click.option(
    "--arch", "arches", multiple=True, type=click.Choice([*ARCH_NAMES, *ARCH_ALIASES]),
    callback=lambda ctx, param, values: tuple(ARCH_ALIASES.get(v, v) for v in values),
    help="Only this architecture (repeatable; amd64 = x86_64, aarch64 = arm64). Default: all.",
)  # fmt: skip
deprecated_option = click.option(
    "--include-deprecated", is_flag=True, help="Also runtimes past their deprecation date."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
force_options = together(
    click.option("--force", is_flag=True, help="Rebuild even if the inputs are unchanged."),
    click.option("--no-cache", is_flag=True, help="Rerun every build step (fresh packages)."),
)


def runtimes(
    *, required: bool = False, one: bool = False, arch: bool = True, deprecated: bool = True
) -> Callable[[F], F]:
    """RUNTIMES… (or, ``one``, RUNTIME), with ``--arch`` and ``--include-deprecated`` when asked:
    resolved by ``selected`` into the command's ``run`` and ``cells``."""
    name = "runtime" if one else "runtimes"

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def resolved(*args: Any, include_deprecated: bool = False, **kwargs: Any) -> Any:
            ids = [kwargs.pop(name)] if one else kwargs.pop(name)
            run, cells = selected(settings(), ids, include_deprecated, kwargs.pop("arches", ()))
            return f(*args, run=run, cells=cells, **kwargs)

        argument = click.argument(name, nargs=1 if one else -1, required=required or one)
        options = [argument, *([arch_option] if arch else [])]
        options += [deprecated_option] if deprecated else []
        return together(*options)(cast(F, resolved))

    return decorate


def request(kind: type[Any]) -> Callable[[F], F]:
    """The command's ``cells`` and its options named like ``kind``'s fields, as one frozen
    ``kind`` (orchestrate/requests.py) in its ``request``: the request's ``cells`` are the
    named cells, its ``runtimes``, ``arches`` (and ``runtime``, the one named) theirs."""
    names = {field.name for field in dataclasses.fields(kind)}

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def folded(*args: Any, cells: Cells, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names & kwargs.keys()}
            named = {"cells": cells, "runtimes": cells.runtimes, "arches": cells.arches}
            values |= {name: value for name, value in named.items() if name in names}
            if "runtime" in names:
                values["runtime"] = cells.runtimes[0]
            return f(*args, request=kind(**values), **kwargs)

        return cast(F, folded)

    return decorate


def _written(*, is_file: bool) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def check(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
        if value is not None and (why := unwritable(value, is_file=is_file)):
            raise UsageError(f"--{param.name} {value}: {why}")
        return value

    return check


written_folder = _written(is_file=False)
written_file = _written(is_file=True)


def _remote(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """No credentials inside a git remote's URL."""
    from ..git import check_remote

    if value is not None:
        check_remote(value)
    return value


def _registry(value: str) -> RegistryRef:
    from ..oci.registry import RegistryRef

    try:
        return RegistryRef.parse(value)
    except RegistryError as exc:
        raise UsageError(str(exc)) from None  # a command-line error, before anything is sent


def registry_option(
    help: str, *, required: bool = False, dest: str = "registry"
) -> Callable[[F], F]:
    return click.option(
        "--registry", dest, required=required, metavar="REGISTRY/NAMESPACE", help=help,
        callback=lambda ctx, param, value: None if value is None else _registry(value),
    )  # fmt: skip


def remote_option(
    help: str, *, name: str = "--git-remote", required: bool = False
) -> Callable[[F], F]:
    """A git remote, passed as ``remote`` (``--published``: as ``published``)."""
    dest = "remote" if name == "--git-remote" else name.removeprefix("--")
    return click.option(name, dest, required=required, callback=_remote, help=help)


def folder_option(name: str, help: str) -> Callable[[F], F]:
    path = click.Path(path_type=Path, file_okay=False)
    return click.option(name, type=path, callback=written_folder, help=help)


# Where a release goes, for publish and refresh alike.
release_options = together(
    registry_option("Where the images go (REGISTRY/NAMESPACE, e.g. public.ecr.aws/lambda).",
                    required=True),
    remote_option("Also force-push each runtime's branch here."),
    click.option(
        "--report", type=click.Path(path_type=Path, dir_okay=False),
        callback=_written(is_file=True), help="Write a JSON summary here.",
    ),
    click.option(
        "--mirror", "mirrors", multiple=True, metavar="REGISTRY/NAMESPACE",
        callback=lambda ctx, param, values: tuple(map(_registry, values)),
        help="Also push the same digests and tags here (repeatable); one that fails is reported.",
    ),
)  # fmt: skip

_FUNCTION = ("image", "handler", "code", "timeout", "memory", "function_name", "env_pairs",
             "env_file", "layers")  # fmt: skip


def function_options(f: F) -> F:
    """IMAGE and the function's options (as Lambda, AWS's emulator and ``sam local`` take them),
    checked by the emulator into one ``function``."""

    @functools.wraps(f)
    def resolved(*args: Any, **kwargs: Any) -> Any:
        from ..emulator import function_config

        given = {name: kwargs.pop(name) for name in _FUNCTION}
        return f(*args, function=function_config(**given, environ=settings().environ), **kwargs)

    folder = click.Path(path_type=Path, file_okay=False, exists=True)
    return together(
        click.argument("image"),
        click.option("--handler", help="The handler (the image's CMD when left out)."),
        click.option("--code", type=folder, help="Function code, read-only at /var/task."),
        click.option("--timeout", default=300.0, help="Seconds per invocation, in (0, 900]."),
        click.option("--memory", type=click.IntRange(128, 10240), default=3008, help="In MB."),
        click.option("--function-name", default="test_function", help="Its name, in its ARN."),
        click.option("--env", "env_pairs", multiple=True, metavar="KEY=VALUE",
                     help="A variable of the function (repeatable; the value may contain '=')."),
        click.option("--env-file", type=click.Path(path_type=Path, dir_okay=False),
                     help="Variables from a file of KEY=VALUE lines (# comments); --env wins."),
        click.option("--layer", "layers", multiple=True, type=folder,
                     help="A layer's folder (repeatable): merged in order into a read-only /opt."),
    )(cast(F, resolved))  # fmt: skip


def _event(ctx: click.Context, param: click.Parameter, value: str) -> bytes:
    from ..emulator import read_event

    return read_event(value)


event_option = click.option(
    "--event", "payload", default="{}", callback=_event, help="The event: JSON, or @FILE."
)
