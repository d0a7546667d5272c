"""What the commands share: the options they take, and the one place each value is resolved.

A value from the command line is checked here, once, before any work, into what the conductor
receives (orchestrate/requests.py): runtimes (``selected``), a registry reference
(``RegistryRef.parse``), a git remote (``git.check_remote``), a path to write (``written``).
A malformed one is a usage error (exit 2) that never echoes a secret.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import RegistryError, UsageError
from ..git import check_remote
from ..matrix import ARCHES
from ..oci.registry import RegistryRef
from ..orchestrate import Cells, Run
from ..settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def selected(
    settings: Settings,
    ids: Sequence[str],
    include_deprecated: bool = False,
    arches: Sequence[str] = (),
) -> tuple[Run, Cells]:
    """The command's run and the cells it names (every runtime when none): unknown or deprecated
    runtimes are refused before the engine is needed."""
    run = Run.open(settings)
    runtimes = tuple(run.select(ids, include_deprecated=include_deprecated))
    return run, Cells(runtimes=runtimes, arches=tuple(arches))


def arch_option(f: F) -> F:
    return click.option(
        "--arch", "arches", multiple=True, type=click.Choice(list(ARCHES)),
        help="Only this architecture (repeatable). Default: every architecture of the runtime.",
    )(f)  # fmt: skip


def deprecated_option(f: F) -> F:
    return click.option(
        "--include-deprecated", is_flag=True,
        help="Also runtimes past their deprecation date (left out by default).",
    )(f)  # fmt: skip


def written(path: Path, option: str, *, is_file: bool) -> Path:
    """A path the command will write: refused before any work when a file stands where a
    folder must be (or a folder where the file must be), instead of failing after it."""
    if is_file and path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; expected a file name")
    if not is_file and path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: is a file; expected a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{option} {path}: {parent} is a file, not a folder")
            if is_file and parent != (path.parent if str(path.parent) else Path(".")):
                msg = f"{option} {path}: its folder {path.parent} does not exist"
                raise UsageError(msg + "; give the path of a JSON file to write")
            break
    return path


def _written_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    return None if value is None else written(value, f"--{param.name}", is_file=True)


def _written_folder(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    return None if value is None else written(value, f"--{param.name}", is_file=False)


def _remote(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A git remote is checked before any work starts: no credentials inside the URL."""
    if value is not None:
        check_remote(value)
    return value


def _registry(ctx: click.Context, param: click.Parameter, value: str | None) -> RegistryRef | None:
    """``--registry``: a malformed one is a command-line error (exit 2) before anything is
    read or sent."""
    if value is None:
        return None
    try:
        return RegistryRef.parse(value)
    except RegistryError as exc:
        raise UsageError(str(exc)) from None


def _mirrors(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[RegistryRef, ...]:
    return tuple(ref for value in values if (ref := _registry(ctx, param, value)) is not None)


def registry_option(help: str, *, required: bool = False) -> Callable[[F], F]:
    return click.option(
        "--registry", required=required, callback=_registry, metavar="REGISTRY/NAMESPACE",
        help=help,
    )  # fmt: skip


def remote_option(
    help: str, *, name: str = "--git-remote", required: bool = False
) -> Callable[[F], F]:
    return click.option(name, required=required, callback=_remote, help=help)


def folder_option(name: str, help: str) -> Callable[[F], F]:
    return click.option(
        name, type=click.Path(path_type=Path, file_okay=False), callback=_written_folder,
        help=help,
    )  # fmt: skip


def report_option(help: str) -> Callable[[F], F]:
    """``--report FILE``: a JSON summary, its folder checked before any work."""
    return click.option(
        "--report", type=click.Path(path_type=Path, dir_okay=False), callback=_written_file,
        help=help,
    )  # fmt: skip


def mirror_option(help: str) -> Callable[[F], F]:
    """``--mirror REGISTRY/NAMESPACE``, repeatable, each checked as ``--registry`` is."""
    return click.option(
        "--mirror", "mirrors", multiple=True, metavar="REGISTRY/NAMESPACE", callback=_mirrors,
        help=help,
    )  # fmt: skip


def json_option(help: str) -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True, help=help)
