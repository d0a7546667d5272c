"""The ``lambda-images`` command: parse, call a stage, print. Errors become one line + exit code."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from . import __version__, log
from .engine import connect
from .errors import LambdaImagesError
from .lock import Lock
from .matrix import ARCHES, DEFAULT_MATRIX, Matrix, Runtime, load_matrix

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, kw_only=True)
class Context:
    matrix_path: Path
    work: Path
    today: dt.date

    def matrix(self) -> Matrix:
        return load_matrix(self.matrix_path)


def _env(name: str, default: str) -> str:
    """Environment defaults where empty counts as unset."""
    return os.environ.get(name, "") or default


def arch_option(f: F) -> F:
    return click.option(
        "--arch",
        "arches",
        multiple=True,
        type=click.Choice(list(ARCHES)),
        help="Only this architecture (repeatable). Default: every architecture of the runtime.",
    )(f)


def deprecated_option(f: F) -> F:
    return click.option(
        "--include-deprecated",
        is_flag=True,
        help="Also runtimes past their deprecation date (left out by default).",
    )(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="lambda-images")
@click.option(
    "--matrix",
    "matrix_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=lambda: _env("LAMBDA_IMAGES_MATRIX", str(DEFAULT_MATRIX)),
    help="The runtime matrix. [default: runtimes.yaml]",
)
@click.option(
    "--work",
    type=click.Path(path_type=Path, file_okay=False),
    default=lambda: _env("LAMBDA_IMAGES_WORK", "out"),
    help="Work directory for contexts, records and snapshots. [default: out]",
)
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Decide deprecation as of this date (YYYY-MM-DD). [default: today]",
)
@click.pass_context
def cli(ctx: click.Context, matrix_path: Path, work: Path, today: dt.datetime | None) -> None:
    """Build, test, snapshot and publish base container images for AWS Lambda runtimes."""
    day = today.date() if today else dt.date.today()
    ctx.obj = Context(matrix_path=matrix_path, work=work, today=day)


# --- list --------------------------------------------------------------------------------------


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
def list_command(obj: Context, as_json: bool) -> None:
    """List every runtime of the matrix and its state (supported, deprecating, deprecated)."""
    matrix = obj.matrix()
    rows = [runtime_row(rt, obj.today) for rt in matrix.runtimes]
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
    Console(highlight=False).print(table)


# --- single stages -----------------------------------------------------------------------------


def _runtimes(
    obj: Context, ids: Sequence[str], include_deprecated: bool = False
) -> tuple[Matrix, list[Runtime]]:
    matrix = obj.matrix()
    return matrix, matrix.select(ids, include_deprecated=include_deprecated, today=obj.today)


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
    obj: Context,
    runtimes: tuple[str, ...],
    check: bool,
    contexts: bool,
    arches: tuple[str, ...],
    include_deprecated: bool,
) -> None:
    """Render every runtime x architecture into dockerfiles/ (committed), or check it."""
    from .errors import StaleError
    from .render import RENDERED_DIR, rendered_files, stale_files, write_rendered

    if contexts:
        from .rebuild import stage_render

        matrix, selected = _runtimes(obj, runtimes, include_deprecated)
        lock = Lock.for_matrix(matrix.path)
        for target in matrix.targets(selected, arches):
            context = stage_render(target, obj.work, lock, matrix.templates_dir)
            click.echo(str(context / "Dockerfile"))
        return
    if runtimes or arches:
        raise click.UsageError("runtimes and --arch only go with --contexts")
    matrix = obj.matrix()
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
def docs(obj: Context, check: bool, readme: Path | None) -> None:
    """Write the runtime tables into README.md between its runtimes markers (or check them)."""
    from .docs import runtime_tables, with_tables
    from .errors import StaleError

    matrix = obj.matrix()
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
    obj: Context,
    runtimes: tuple[str, ...],
    as_json: bool,
    arches: tuple[str, ...],
    include_deprecated: bool,
) -> None:
    """The CI job matrix: one entry per runtime x architecture, with its runner label."""
    matrix, selected = _runtimes(obj, runtimes, include_deprecated)
    jobs = matrix.job_matrix(matrix.targets(selected, arches))
    if as_json:
        click.echo(json.dumps(jobs, indent=2))
        return
    click.echo(json.dumps(jobs, separators=(",", ":")))


@cli.command()
@click.argument("runtimes", nargs=-1)
@arch_option
@deprecated_option
@click.pass_obj
def base(
    obj: Context, runtimes: tuple[str, ...], arches: tuple[str, ...], include_deprecated: bool
) -> None:
    """Build (Debian) or pull (Amazon Linux) the OS base images and load them into the engine."""
    from .rebuild import stage_base

    matrix, selected = _runtimes(obj, runtimes, include_deprecated)
    client = connect()
    lock = Lock.for_matrix(matrix.path)
    done: set[tuple[str, str]] = set()
    for target in matrix.targets(selected, arches):
        key = (target.runtime.os.id, target.arch.name)
        if key not in done:
            done.add(key)
            stage_base(target, client, lock)


@cli.command()
@click.argument("runtimes", nargs=-1, required=True)
@arch_option
@click.option("--force", is_flag=True, help="Rebuild even if the inputs are unchanged.")
@click.option("--no-cache", is_flag=True, help="Rerun every build step (fresh packages).")
@deprecated_option
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Also snapshot each cell and copy its records and layers to OUT/<runtime>/<arch>/.",
)
@click.option(
    "--published",
    metavar="GIT_REMOTE",
    help="Skip a cell whose input digest equals the one on its runtime's branch there.",
)
@click.pass_obj
def build(
    obj: Context,
    runtimes: tuple[str, ...],
    arches: tuple[str, ...],
    force: bool,
    no_cache: bool,
    include_deprecated: bool,
    out: Path | None,
    published: str | None,
) -> None:
    """Build images: base, render, fetch inputs, docker build, then the conformance tests
    (and, with --out, the snapshot) per architecture."""
    from .incremental import export_cell, published_digest, write_record
    from .rebuild import build_cell, stage_inputs, stage_snapshot, stage_test, target_dir

    matrix, selected = _runtimes(obj, runtimes, include_deprecated)
    client = connect()
    lock = Lock.for_matrix(matrix.path)
    for target in matrix.targets(selected, arches):
        folder = target_dir(obj.work, target)
        inputs = stage_inputs(target, obj.work, client, lock)
        if (
            published
            and not (force or no_cache)
            and published_digest(published, target) == inputs.digest
        ):
            log.info(f"{target.key}: same inputs as published ({inputs.digest[7:19]}), skipped")
            write_record(folder, inputs, "unchanged")
            line = f"{target.image_tag}\t-\t{target.arch.docker}\tunchanged"
        else:
            record, skipped = build_cell(
                target, obj.work, client, lock, force=force, no_cache=no_cache, inputs=inputs
            )
            # A cell is tested before it is handed on: a failing image never reaches publish.
            stage_test(target, obj.work, client, reuse=skipped)
            if out:
                stage_snapshot(target, obj.work, client, force=force or no_cache)
            state = "skipped" if skipped else "built"
            line = f"{record.image}\t{record.image_id}\t{record.architecture}\t{state}"
        if out:
            export_cell(folder, out, target)
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
    from dataclasses import asdict

    from .incremental import plan as make_plan
    from .incremental import read_states

    cells = json.loads(cells_json.read_text("utf-8"))["include"]
    decided = make_plan(cells, read_states(folders))
    data = {**asdict(decided), "refill": {"include": decided.refill}}
    click.echo(json.dumps(data, separators=(",", ":")))


@cli.command()
@click.argument("runtimes", nargs=-1, required=True)
@arch_option
@deprecated_option
@click.pass_obj
def snapshot(
    obj: Context, runtimes: tuple[str, ...], arches: tuple[str, ...], include_deprecated: bool
) -> None:
    """Export built images as normalized layer tarballs and lay out their branch content."""
    from .rebuild import stage_snapshot
    from .snapshot import assemble_branch

    matrix, selected = _runtimes(obj, runtimes, include_deprecated)
    client = connect()
    for rt in selected:
        targets = matrix.targets([rt], arches)
        for target in targets:
            stage_snapshot(target, obj.work, client)
        click.echo(str(assemble_branch(rt, obj.work, [t.arch.name for t in targets])))


@cli.command()
@click.argument("runtimes", nargs=-1, required=True)
@click.option("--git-remote", required=True, help="Git remote URL (file:///… for a local one).")
@deprecated_option
@click.pass_obj
def branch(
    obj: Context, runtimes: tuple[str, ...], git_remote: str, include_deprecated: bool
) -> None:
    """Commit each runtime's snapshot as one orphan commit and force-push its branch."""
    from .branch import push_branch
    from .snapshot import assemble_branch

    matrix, selected = _runtimes(obj, runtimes, include_deprecated)
    for rt in selected:
        content = assemble_branch(rt, obj.work)
        result = push_branch(matrix, rt.id, content, git_remote)
        state = "pushed" if result.pushed else "unchanged"
        click.echo(f"{rt.id}\t{result.commit}\t{state}")


@cli.command("publish")
@click.argument("runtimes", nargs=-1)
@click.option("--registry", required=True, help="REGISTRY/NAMESPACE, e.g. public.ecr.aws/lambda.")
@click.option("--git-remote", help="Also force-push each runtime's branch here.")
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), help="JSON summary.")
@click.pass_obj
def publish_command(
    obj: Context,
    runtimes: tuple[str, ...],
    registry: str,
    git_remote: str | None,
    report: Path | None,
) -> None:
    """Push snapshots from the work directory to a registry (and branches); all-or-nothing
    per runtime."""
    matrix, selected = _runtimes(obj, runtimes)
    _publish(obj, matrix, [rt.id for rt in selected], registry, git_remote, report)


def _publish(
    obj: Context,
    matrix: Matrix,
    ids: list[str],
    registry: str,
    git_remote: str | None,
    report: Path | None,
) -> None:
    from .errors import PublishError
    from .publish import publish
    from .registry import RegistryRef, resolve_credentials

    ref = RegistryRef.parse(registry)
    summary = publish(
        matrix, ids, work=obj.work, registry=ref, credentials=resolve_credentials(ref.host),
        git_remote=git_remote, report_path=report,
    )  # fmt: skip
    for r in summary.runtimes:
        click.echo(f"{r.runtime}\t{r.status}\t{r.index or r.reason}")
    failed = [r.runtime for r in summary.runtimes if r.status == "failed"]
    if failed:
        raise PublishError(f"not published: {', '.join(failed)} (reasons above and in --report)")


@cli.command()
@click.argument("runtimes", nargs=-1)
@deprecated_option
@click.pass_obj
def lock(obj: Context, runtimes: tuple[str, ...], include_deprecated: bool) -> None:
    """Pin every downloadable input by sha256 in runtimes.lock.json (needs the network).

    Inputs that cannot be downloaded from here stay unlocked (null), and are named.
    """
    from .base import lock_base_digest
    from .inputs import lock_npm, lock_pip, lock_url_inputs
    from .matrix import ImageBase

    matrix, selected = _runtimes(obj, runtimes, include_deprecated)
    lockfile = Lock.for_matrix(matrix.path)
    unlocked: list[str] = []
    tried: set[str] = set()
    for rt in selected:
        with log.step(f"lock {rt.id}"):
            for arch in rt.architectures if rt.install.pip else ():
                lockfile.pip.setdefault(rt.id, {})[arch] = lock_pip(rt, arch)
            if rt.install.npm:
                lockfile.npm[rt.id] = lock_npm(rt)
            unlocked += [f"{rt.id}: {name}" for name in lock_url_inputs(rt, lockfile, tried)]
            if isinstance(rt.os.base, ImageBase):
                for arch in rt.architectures:
                    digests = lockfile.bases.setdefault(rt.os.id, {})
                    if not digests.get(arch):
                        digests[arch] = lock_base_digest(rt.os.base, ARCHES[arch])
                    if not digests[arch]:
                        unlocked.append(f"{rt.os.id}: base image for {arch}")
    lockfile.save()
    click.echo(str(lockfile.path))
    for item in sorted(set(unlocked)):
        log.warning(f"unlocked: {item}")


# --- local invocation and conformance ----------------------------------------------------------


def function_options(f: F) -> F:
    for option in reversed(
        (
            click.option("--handler", help="The handler (the image's CMD when left out)."),
            click.option(
                "--code",
                type=click.Path(path_type=Path, file_okay=False, exists=True),
                help="Function code, mounted read-only at /var/task.",
            ),
            click.option("--timeout", type=float, default=300.0, help="Seconds per invocation."),
            click.option("--memory", type=int, default=3008, help="Memory limit in MB."),
        )
    ):
        f = option(f)
    return f


def _function(
    image: str, handler: str | None, code: Path | None, timeout: float, memory: int
) -> Any:
    from .emulator import FunctionConfig, check_code_dir

    if code is not None:
        check_code_dir(code)
    return FunctionConfig(
        image=image, handler=handler, code=code, timeout=timeout, memory_mb=memory
    )


@cli.command()
@click.argument("image")
@function_options
@click.option("--event", default="{}", help="The event: JSON, or @FILE.")
def invoke(
    image: str, handler: str | None, code: Path | None, timeout: float, memory: int, event: str
) -> None:
    """Invoke a function image once through the Runtime API emulator; print its response."""
    from .emulator import invoke_once, read_event
    from .errors import InvocationError

    payload = read_event(event)
    result = invoke_once(_function(image, handler, code, timeout, memory), connect(), payload)
    click.echo(result.payload.decode(errors="replace"))
    if not result.ok:
        raise InvocationError(f"{result.error_type}: {result.error_message()}")


@cli.command()
@click.argument("image")
@function_options
@click.option("--port", type=int, default=9000, help="Port of the invoke endpoint on 127.0.0.1.")
def serve(
    image: str, handler: str | None, code: Path | None, timeout: float, memory: int, port: int
) -> None:
    """Serve POST /2015-03-31/functions/function/invocations for a function image until Ctrl-C."""
    from .emulator import serve as run_server

    def ready(url: str) -> None:
        click.echo(url)
        sys.stdout.flush()
        log.info(f"invoke with: curl -XPOST {url} -d '{{}}'")

    run_server(_function(image, handler, code, timeout, memory), connect(), port, ready)


@cli.command()
@click.argument("runtimes", nargs=-1, required=True)
@arch_option
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON on stdout.")
@click.pass_obj
def test(obj: Context, runtimes: tuple[str, ...], arches: tuple[str, ...], as_json: bool) -> None:
    """Run Lambda's conformance checks on built images; fails when any check fails."""
    from .conformance import print_report
    from .errors import ConformanceError
    from .rebuild import stage_test

    matrix, selected = _runtimes(obj, runtimes)
    client = connect()
    reports, failed = [], []
    for target in matrix.targets(selected, arches):
        try:
            reports.append(stage_test(target, obj.work, client))
        except ConformanceError as exc:
            reports.append(exc.report)
            failed.append(target.key)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in reports], indent=2))
    else:
        for report in reports:
            print_report(report)
    if failed:
        raise ConformanceError(f"conformance checks failed for {', '.join(failed)}")


# --- rebuild -----------------------------------------------------------------------------------


@cli.command()
@click.argument("runtime")
@arch_option
@click.option("--git-remote", help="Force-push the runtime's branch here (file:///… works).")
@click.option("--no-cache", is_flag=True, help="Rerun every build step (fresh packages).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--force", is_flag=True, help="Rebuild even if the inputs are unchanged.")
@click.option("--push", is_flag=True, help="Then publish it to --registry (and --git-remote).")
@click.option("--registry", help="REGISTRY/NAMESPACE for --push.")
@deprecated_option
@click.pass_obj
def rebuild(
    obj: Context,
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
    """Every stage for one runtime: base, render, build, snapshot, branch (or --push)."""
    from .rebuild import rebuild as run_rebuild

    if push and not registry:
        raise click.UsageError("--push needs --registry REGISTRY/NAMESPACE")
    # An unknown or deprecated runtime is reported before the engine is needed.
    matrix, _ = _runtimes(obj, [runtime], include_deprecated)
    summary = run_rebuild(
        matrix,
        runtime,
        work=obj.work,
        client=connect(),
        arches=arches,
        git_remote=None if push else git_remote,
        force=force,
        no_cache=no_cache,
    )
    if push and registry:
        _publish(obj, matrix, [runtime], registry, git_remote, None)
    data: dict[str, Any] = {
        "runtime": summary.runtime,
        "seconds": summary.seconds,
        "skipped": summary.skipped,
        "images": [
            {
                "image": b.image,
                "image_id": b.image_id,
                "architecture": b.architecture,
                "size": b.size,
                "build_seconds": b.seconds,
                "layers": [layer.file for layer in s.layers],
                "conformance": {
                    "ok": t.ok,
                    "checks": [c.name for c in t.checks],
                },
                "snapshot_bytes": sum(layer.compressed_size for layer in s.layers),
            }
            for b, t, s in zip(summary.builds, summary.tests, summary.snapshots, strict=True)
        ],
        "branch_dir": str(summary.branch_dir),
        "branch": None
        if summary.branch is None
        else {
            "remote": summary.branch.remote,
            "commit": summary.branch.commit,
            "pushed": summary.branch.pushed,
        },
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(title=f"{summary.runtime} in {summary.seconds:.0f}s", box=None, pad_edge=False)
    for column in ("image", "arch", "image id", "size", "checks", "snapshot", "build"):
        table.add_column(column)
    for img in data["images"]:
        table.add_row(
            img["image"],
            img["architecture"],
            img["image_id"][:19],
            log.human_size(img["size"]),
            f"{len(img['conformance']['checks'])} passed",
            f"{len(img['layers'])} layers, {log.human_size(img['snapshot_bytes'])}",
            f"{img['build_seconds']:.0f}s",
        )
    log.console.print(table)
    log.info(f"branch content: {summary.branch_dir}")
    if summary.branch:
        state = "pushed" if summary.branch.pushed else "unchanged, not pushed"
        where = f"{summary.branch.remote} {summary.branch.commit[:12]}"
        log.info(f"branch {summary.runtime} → {where} ({state})")


def main(argv: Sequence[str] | None = None) -> None:
    debug = os.environ.get("LAMBDA_IMAGES_DEBUG", "") not in ("", "0")
    try:
        cli.main(args=argv, prog_name="lambda-images", standalone_mode=False)
    except LambdaImagesError as exc:
        if debug:
            raise
        log.error(str(exc))
        sys.exit(exc.return_code)
    except click.exceptions.Abort:
        log.error("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
