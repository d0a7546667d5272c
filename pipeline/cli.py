"""The ``lambda-images`` command: parse, call the orchestrator, print.

Nothing here decides what a stage does: every command calls one function of orchestrate.py (or
of a stage module for the single-purpose commands) and prints what it returns. Errors become
one line and the exit code of their kind (errors.py; the table is in the README).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import click
from rich.console import Console
from rich.table import Table

from . import __version__, log
from . import orchestrate as do
from .errors import (
    ConformanceError,
    InvocationError,
    LambdaImagesError,
    OutdatedError,
    PublishError,
    StaleError,
    UsageError,
)
from .matrix import ARCHES, Runtime
from .settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def arch_option(f: F) -> F:
    return click.option(
        "--arch",
        "arches",
        multiple=True,
        type=click.Choice(list(ARCHES)),
        help="Only this architecture (repeatable). Default: every architecture of the runtime.",
    )(f)


def _remote(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A git remote is checked before any work starts: no credentials inside the URL."""
    from .git import check_remote

    if value is not None:
        check_remote(value)
    return value


def deprecated_option(f: F) -> F:
    return click.option(
        "--include-deprecated",
        is_flag=True,
        help="Also runtimes past their deprecation date (left out by default).",
    )(f)


def _folder_for(path: Path, option: str, *, is_file: bool) -> Path:
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
            break
    return path


def _written_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    return None if value is None else _folder_for(value, f"--{param.name}", is_file=True)


def _written_folder(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    return None if value is None else _folder_for(value, f"--{param.name}", is_file=False)


_HOST = re.compile(
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
)


def _registry(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--registry``: checked here, so that a malformed one is a command-line error (exit 2)
    before anything is read or sent."""
    from .errors import RegistryError
    from .oci.registry import RegistryRef

    if value is None:
        return None
    rest = value.split("://", 1)[-1]
    host = rest.strip("/").partition("/")[0]
    if "@" in host:  # never echoed: what precedes the @ is a secret
        msg = (
            "--registry: credentials do not belong in the registry name; give REGISTRY/NAMESPACE "
            "and set LAMBDA_IMAGES_REGISTRY_USER and LAMBDA_IMAGES_REGISTRY_PASSWORD"
        )
        raise UsageError(msg)
    shown = value.encode("unicode_escape").decode()
    found = _HOST.fullmatch(host)
    if not found or not 0 < int(found.group("port") or 443) < 65536:
        msg = (
            f"--registry {shown!r}: {host.encode('unicode_escape').decode()!r} is not a host "
            "name with an optional port (1-65535); expected REGISTRY/NAMESPACE, for example "
            "public.ecr.aws/lambda or 127.0.0.1:5000/lambda"
        )
        raise UsageError(msg)
    try:
        RegistryRef.parse(value)
    except RegistryError as exc:
        raise UsageError(str(exc)) from None
    return value


def _mirrors(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """``--mirror``: each checked as ``--registry`` is."""
    return tuple(_registry(ctx, param, value) or value for value in values)


def report_option(help: str) -> Callable[[F], F]:
    """``--report FILE``: a JSON summary, its folder checked before any work."""
    return click.option(
        "--report",
        type=click.Path(path_type=Path, dir_okay=False),
        callback=_written_file,
        help=help,
    )


def mirror_option(help: str) -> Callable[[F], F]:
    """``--mirror REGISTRY/NAMESPACE``, repeatable, each checked as ``--registry`` is."""
    return click.option(
        "--mirror", "mirrors", multiple=True, metavar="REGISTRY/NAMESPACE", callback=_mirrors,
        help=help,
    )  # fmt: skip


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="lambda-images")
@click.option(
    "--matrix",
    "matrix_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The runtime matrix. [default: $LAMBDA_IMAGES_MATRIX, or runtimes.yaml]",
)
@click.option(
    "--work",
    type=click.Path(path_type=Path, file_okay=False),
    callback=_written_folder,
    default=None,
    help="Work directory for contexts, records, snapshots. [default: $LAMBDA_IMAGES_WORK, or out]",
)
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Decide deprecation as of this date (YYYY-MM-DD). [default: today]",
)
@click.pass_context
def cli(
    ctx: click.Context, matrix_path: Path | None, work: Path | None, today: dt.datetime | None
) -> None:
    """Build, test, snapshot and publish base container images for AWS Lambda runtimes."""
    settings = ctx.obj if isinstance(ctx.obj, Settings) else Settings.from_environ()
    overrides: dict[str, Any] = {}
    if matrix_path is not None:
        overrides["matrix"] = matrix_path
    if work is not None:
        overrides["work"] = work
    if today is not None:
        overrides["today"] = today.date()
    ctx.obj = dataclasses.replace(settings, **overrides)


def _selected(
    settings: Settings, ids: Sequence[str], include_deprecated: bool = False
) -> tuple[do.Run, list[Runtime]]:
    run = do.Run.open(settings)
    return run, run.select(ids, include_deprecated=include_deprecated)


# --- the matrix ----------------------------------------------------------------------------


def runtime_row(rt: Runtime, today: dt.date) -> dict[str, Any]:
    return {
        "id": rt.id,
        "name": rt.name,
        "family": rt.family.id,
        "version": rt.version,
        "tag": rt.tag,
        "os": rt.os.id,
        "os_name": rt.os.name,
        "architectures": list(rt.architectures),
        "sdk": rt.sdk,
        "deprecation": rt.deprecation.isoformat() if rt.deprecation else None,
        "state": rt.state(today),
    }


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the matrix as JSON on stdout.")
@click.pass_obj
def list_command(settings: Settings, as_json: bool) -> None:
    """List every runtime of the matrix and its state (supported, deprecating, deprecated)."""
    rows = [runtime_row(rt, settings.today) for rt in do.Run.open(settings).matrix.runtimes]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(box=None, pad_edge=False)
    for column in ("identifier", "name", "OS", "architectures", "SDK", "deprecation", "state"):
        table.add_column(column)
    styles = {"supported": "green", "deprecating": "yellow", "deprecated": "red"}
    for r in rows:
        table.add_row(
            r["id"],
            r["name"],
            r["os_name"],
            ", ".join(r["architectures"]),
            r["sdk"] or "",
            r["deprecation"] or "",
            f"[{styles[r['state']]}]{r['state']}[/]",
        )
    Console(highlight=False, emoji=False).print(table)


@cli.command()
@click.argument("runtimes", nargs=-1)
@click.option("--check", is_flag=True, help="Fail, naming the files, if dockerfiles/ is stale.")
@click.option(
    "--contexts", is_flag=True, help="Render build contexts (with inputs) into the work dir."
)
@arch_option
@deprecated_option
@click.pass_obj
def render(
    settings: Settings,
    runtimes: tuple[str, ...],
    check: bool,
    contexts: bool,
    arches: tuple[str, ...],
    include_deprecated: bool,
) -> None:
    """Render every runtime x architecture into dockerfiles/ (committed), or check it."""
    from .render import RENDERED_DIR, rendered_files, stale_files, write_rendered

    if contexts:
        run, selected = _selected(settings, runtimes, include_deprecated)
        for path in do.render_contexts(run, selected, arches):
            click.echo(str(path))
        return
    if runtimes or arches:
        raise UsageError("runtimes and --arch only go with --contexts")
    matrix = do.Run.open(settings).matrix
    folder = matrix.path.parent / RENDERED_DIR
    expected = rendered_files(matrix.targets(matrix.runtimes), templates_dir=matrix.templates_dir)
    if check:
        stale = stale_files(expected, folder)
        if stale:
            names = ", ".join(f"{RENDERED_DIR}/{s}" for s in stale)
            msg = f"{len(stale)} rendered file(s) are stale: {names}; run `lambda-images render`"
            raise StaleError(msg)
        click.echo(f"{RENDERED_DIR}/ is up to date ({len(expected)} files)")
        return
    for rel in write_rendered(expected, folder):
        click.echo(f"{RENDERED_DIR}/{rel}")


@cli.command()
@click.option("--check", is_flag=True, help="Fail if README.md's tables are stale.")
@click.option("--readme", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.pass_obj
def docs(settings: Settings, check: bool, readme: Path | None) -> None:
    """Write the runtime tables into README.md between its runtimes markers (or check them)."""
    from .docs import runtime_tables, with_tables

    matrix = do.Run.open(settings).matrix
    readme = readme or matrix.path.parent / "README.md"
    text = with_tables(readme, runtime_tables(matrix))
    current = readme.read_text("utf-8")
    if check:
        if text != current:
            raise StaleError(f"{readme}: the runtime tables are stale; run `lambda-images docs`")
        click.echo(f"{readme}: runtime tables are up to date")
        return
    if text != current:
        readme.write_text(text, encoding="utf-8", newline="\n")
        click.echo(str(readme))


@cli.command("matrix")
@click.argument("runtimes", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the job matrix as JSON.")
@arch_option
@deprecated_option
@click.pass_obj
def matrix_command(
    settings: Settings,
    runtimes: tuple[str, ...],
    as_json: bool,
    arches: tuple[str, ...],
    include_deprecated: bool,
) -> None:
    """The CI job matrix: one entry per runtime x architecture, with its runner label."""
    run, selected = _selected(settings, runtimes, include_deprecated)
    jobs = run.matrix.job_matrix(run.matrix.targets(selected, arches))
    click.echo(json.dumps(jobs, indent=2) if as_json else json.dumps(jobs, separators=(",", ":")))


# --- stages --------------------------------------------------------------------------------


@cli.command()
@click.argument("runtimes", nargs=-1)
@arch_option
@deprecated_option
@click.pass_obj
def base(
    settings: Settings, runtimes: tuple[str, ...], arches: tuple[str, ...], include_deprecated: bool
) -> None:
    """Build (Debian) or pull (Amazon Linux) the OS base images and load them into the engine."""
    run, selected = _selected(settings, runtimes, include_deprecated)
    for record in do.make_bases(run, selected, arches):
        click.echo(f"{record.name}\t{record.image_id}\t{record.architecture}")


@cli.command()
@click.argument("runtimes", nargs=-1, required=True)
@arch_option
@click.option("--force", is_flag=True, help="Rebuild even if the inputs are unchanged.")
@click.option("--no-cache", is_flag=True, help="Rerun every build step (fresh packages).")
@deprecated_option
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    callback=_written_folder,
    help="Also snapshot each cell and copy its records and layers to OUT/<runtime>/<arch>/.",
)
@click.option(
    "--published",
    metavar="GIT_REMOTE",
    callback=_remote,
    help="Skip a cell whose input digest equals the one on its runtime's branch there.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the cells as JSON on stdout.")
@click.pass_obj
def build(
    settings: Settings,
    runtimes: tuple[str, ...],
    arches: tuple[str, ...],
    force: bool,
    no_cache: bool,
    include_deprecated: bool,
    out: Path | None,
    published: str | None,
    as_json: bool,
) -> None:
    """Build images: base, render, fetch inputs, docker build, then the conformance tests
    (and, with --out, the snapshot) per architecture."""
    run, selected = _selected(settings, runtimes, include_deprecated)
    summary = do.build(
        run, selected, arches, force=force, no_cache=no_cache, out=out, published=published
    )
    if as_json:
        click.echo(json.dumps(summary.as_json(), indent=2))
        return
    for line in summary.show():
        click.echo(line)


@cli.command()
@click.option(
    "--cells",
    "cells_json",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help='The run\'s cells, {"include": [{"runtime", "arch", …}]} (`lambda-images matrix --json`).',
)
@click.argument("folders", nargs=-1, type=click.Path(path_type=Path, file_okay=False))
def plan(cells_json: Path, folders: tuple[Path, ...]) -> None:
    """From the inputs.json the cells left in FOLDERS: what to publish, rebuild, or leave."""
    from .incremental import load_cells, read_states
    from .incremental import plan as make_plan

    decided = make_plan(load_cells(cells_json), read_states(folders))
    click.echo(json.dumps(decided.as_json(), separators=(",", ":")))


@cli.command()
@click.argument("runtimes", nargs=-1, required=True)
@arch_option
@deprecated_option
@click.pass_obj
def snapshot(
    settings: Settings, runtimes: tuple[str, ...], arches: tuple[str, ...], include_deprecated: bool
) -> None:
    """Export built images as normalized layer tarballs and lay out their branch content."""
    run, selected = _selected(settings, runtimes, include_deprecated)
    for folder in do.snapshot_runtimes(run, selected, arches):
        click.echo(str(folder))


@cli.command()
@click.argument("runtimes", nargs=-1, required=True)
@click.option(
    "--git-remote",
    required=True,
    callback=_remote,
    help="Git remote URL (file:///… for a local one).",
)
@deprecated_option
@click.pass_obj
def branch(
    settings: Settings, runtimes: tuple[str, ...], git_remote: str, include_deprecated: bool
) -> None:
    """Commit each runtime's snapshot as one orphan commit and force-push its branch."""
    run, selected = _selected(settings, runtimes, include_deprecated)
    for rt in selected:
        result = do.push_runtime_branch(run, rt, git_remote)
        state = "pushed" if result.pushed else "unchanged"
        click.echo(f"{rt.id}\t{result.commit}\t{state}")


@cli.command("publish")
@click.argument("runtimes", nargs=-1)
@click.option(
    "--registry",
    required=True,
    callback=_registry,
    help="REGISTRY/NAMESPACE, e.g. public.ecr.aws/lambda.",
)
@click.option("--git-remote", callback=_remote, help="Also force-push each runtime's branch here.")
@report_option("JSON summary.")
@mirror_option(
    "Also push the same digests and tags here (repeatable); a failing mirror is reported."
)
@click.pass_obj
def publish_command(
    settings: Settings,
    runtimes: tuple[str, ...],
    registry: str,
    git_remote: str | None,
    report: Path | None,
    mirrors: tuple[str, ...],
) -> None:
    """Push snapshots from the work directory to a registry (and branches); all-or-nothing
    per runtime."""
    run, selected = _selected(settings, runtimes)
    ids = [rt.id for rt in selected]
    do.publish_runtimes(run, ids, registry, git_remote, report, mirrors).show()


@cli.command()
@click.argument("runtimes", nargs=-1)
@deprecated_option
@click.pass_obj
def lock(settings: Settings, runtimes: tuple[str, ...], include_deprecated: bool) -> None:
    """Pin every downloadable input by sha256 in runtimes.lock.json (needs the network).

    Inputs that cannot be downloaded from here stay unlocked (null), and are named.
    """
    run, selected = _selected(settings, runtimes, include_deprecated)
    summary = do.lock_inputs(run, selected)
    click.echo(str(summary.path))
    summary.show()


# --- local invocation and conformance ----------------------------------------------------------


def function_options(f: F) -> F:
    """The function's configuration, as Lambda (and AWS's emulator, and ``sam local``) take it;
    the command receives it as one ``function`` argument (an emulator ``FunctionConfig``)."""
    for option in reversed(
        (
            click.option("--handler", help="The handler (the image's CMD when left out)."),
            click.option(
                "--code",
                type=click.Path(path_type=Path, file_okay=False, exists=True),
                help="Function code, mounted read-only at /var/task.",
            ),
            click.option(
                "--timeout",
                type=float,
                default=300.0,
                help="Seconds per invocation, more than 0 and at most 900 (Lambda's limit).",
            ),
            click.option(
                "--memory",
                type=click.IntRange(128, 10240),
                default=3008,
                help="Memory limit in MB (128 to 10240, as Lambda allows).",
            ),
            click.option(
                "--function-name",
                default="test_function",
                help="The function's name (AWS_LAMBDA_FUNCTION_NAME, the ARN, the log group).",
            ),
            click.option(
                "--env",
                "env_pairs",
                multiple=True,
                metavar="KEY=VALUE",
                help="A variable of the function (repeatable; the value may contain '=').",
            ),
            click.option(
                "--env-file",
                type=click.Path(path_type=Path, dir_okay=False),
                help="Variables from a file of KEY=VALUE lines (# comments); --env wins.",
            ),
            click.option(
                "--layer",
                "layers",
                multiple=True,
                type=click.Path(path_type=Path, file_okay=False, exists=True),
                help="A layer's folder (repeatable): merged in order into a read-only /opt.",
            ),
        )
    ):
        f = option(f)

    @functools.wraps(f)
    def with_function(
        *args: Any,
        image: str,
        handler: str | None,
        code: Path | None,
        timeout: float,
        memory: int,
        function_name: str,
        env_pairs: tuple[str, ...],
        env_file: Path | None,
        layers: tuple[Path, ...],
        **kwargs: Any,
    ) -> Any:
        from .emulator import FunctionConfig, check_code_dir, check_timeout
        from .emulator.options import check_function_name, function_environment

        check_timeout(timeout)
        if code is not None:
            check_code_dir(code)
        function = FunctionConfig(
            image=image,
            handler=handler,
            code=code,
            timeout=timeout,
            memory_mb=memory,
            function_name=check_function_name(function_name),
            environment=function_environment(env_pairs, env_file),
            layers=tuple(layers),
        )
        return f(*args, function=function, **kwargs)

    return cast(F, with_function)


@cli.command()
@click.argument("image")
@function_options
@click.option("--event", default="{}", help="The event: JSON, or @FILE.")
@click.pass_obj
def invoke(settings: Settings, function: Any, event: str) -> None:
    """Invoke a function image once through the Runtime API emulator; print its response."""
    from .emulator import invoke_once, read_event
    from .engine import connect

    payload = read_event(event)
    result = invoke_once(function, connect(settings.docker_host), payload)
    click.echo(result.payload.decode(errors="replace"))
    if not result.ok:
        raise InvocationError(f"{result.error_type}: {result.error_message()}")


@cli.command()
@click.argument("image")
@function_options
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=9000,
    help="Port of the invoke endpoint on 127.0.0.1 (0: any free port).",
)
@click.pass_obj
def serve(settings: Settings, function: Any, port: int) -> None:
    """Serve POST /2015-03-31/functions/function/invocations for a function image until Ctrl-C."""
    from .emulator import serve as run_server
    from .engine import connect

    def ready(url: str) -> None:
        click.echo(url)
        sys.stdout.flush()
        log.info(f"invoke with: curl -XPOST {url} -d '{{}}'")

    run_server(function, connect(settings.docker_host), port, ready)


@cli.command()
@click.argument("runtimes", nargs=-1, required=True)
@arch_option
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON on stdout.")
@click.pass_obj
def test(
    settings: Settings, runtimes: tuple[str, ...], arches: tuple[str, ...], as_json: bool
) -> None:
    """Run Lambda's conformance checks on built images; fails when any check fails."""
    run, selected = _selected(settings, runtimes)
    reports, failed = do.test_targets(run, selected, arches)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in reports], indent=2))
    else:
        do.show_reports(reports)
    if failed:
        raise ConformanceError(f"conformance checks failed for {', '.join(failed)}")


@cli.command()
@click.argument("runtimes", nargs=-1)
@arch_option
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON on stdout.")
@click.option(
    "--registry",
    callback=_registry,
    help="Check the images published to REGISTRY/NAMESPACE (their <tag>-<arch> tags) instead "
    "of the ones in the engine.",
)
@deprecated_option
@click.pass_obj
def outdated(
    settings: Settings,
    runtimes: tuple[str, ...],
    arches: tuple[str, ...],
    as_json: bool,
    registry: str | None,
    include_deprecated: bool,
) -> None:
    """Installed packages of Debian images with a newer version in their OS archives (suite,
    -updates, -security): the built images, or with --registry the published ones; fails when
    any has one."""
    run, selected = _selected(settings, runtimes, include_deprecated)
    report = do.outdated_images(run, selected, arches, registry)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)
    if report.outdated:
        names = ", ".join(f"{i.runtime}/{i.arch}" for i in report.outdated)
        raise OutdatedError(f"newer packages in the archives for {names}; rebuild them")


@cli.command()
@click.argument("runtimes", nargs=-1)
@click.option(
    "--registry",
    required=True,
    callback=_registry,
    help="REGISTRY/NAMESPACE whose published images are checked, and where rebuilt ones go.",
)
@click.option(
    "--git-remote", callback=_remote, help="Also force-push each rebuilt runtime's branch."
)
@report_option("JSON summary: what was behind, what was rebuilt, what publishing did.")
@mirror_option("Also push the rebuilt runtimes here (repeatable), as publish --mirror does.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.pass_obj
def refresh(
    settings: Settings,
    runtimes: tuple[str, ...],
    registry: str,
    git_remote: str | None,
    report: Path | None,
    mirrors: tuple[str, ...],
    as_json: bool,
) -> None:
    """What a schedule runs: `outdated --registry` on the published images, then rebuild and
    publish exactly the runtimes with a package behind; the others are not touched."""
    run, selected = _selected(settings, runtimes)
    summary = do.refresh(run, selected, registry, git_remote, report, mirrors)
    if as_json:
        click.echo(json.dumps(summary.as_json(), indent=2))
    else:
        for line in summary.lines():
            click.echo(line)
        if summary.publish is not None:
            summary.publish.show()
    if summary.failed:
        names = ", ".join(summary.failed)
        raise PublishError(f"not refreshed: {names} (reasons above and in --report)")


@cli.command()
@click.argument("runtime")
@arch_option
@click.option(
    "--git-remote",
    callback=_remote,
    help="Force-push the runtime's branch here (file:///… works).",
)
@click.option("--no-cache", is_flag=True, help="Rerun every build step (fresh packages).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--force", is_flag=True, help="Rebuild even if the inputs are unchanged.")
@click.option("--push", is_flag=True, help="Then publish it to --registry (and --git-remote).")
@click.option("--registry", callback=_registry, help="REGISTRY/NAMESPACE for --push.")
@deprecated_option
@click.pass_obj
def rebuild(
    settings: Settings,
    runtime: str,
    arches: tuple[str, ...],
    git_remote: str | None,
    no_cache: bool,
    as_json: bool,
    force: bool,
    push: bool,
    registry: str | None,
    include_deprecated: bool,
) -> None:
    """Every stage for one runtime: base, render, build, test, snapshot, branch (or --push)."""
    if push and not registry:
        raise click.UsageError("--push needs --registry REGISTRY/NAMESPACE")
    # An unknown or deprecated runtime is reported before the engine is needed.
    run, _ = _selected(settings, [runtime], include_deprecated)
    summary = do.rebuild(
        run,
        runtime,
        arches,
        force=force,
        no_cache=no_cache,
        git_remote=git_remote,
        registry=registry if push else None,
    )
    if as_json:
        click.echo(json.dumps(summary.as_json(), indent=2))
    else:
        summary.show()


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
