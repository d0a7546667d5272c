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
@click.pass_context
def cli(ctx: click.Context, matrix_path: Path, work: Path) -> None:
    """Build, test, snapshot and publish base container images for AWS Lambda runtimes."""
    ctx.obj = Context(matrix_path=matrix_path, work=work)


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
    """List the runtimes of the matrix and their state."""
    matrix = obj.matrix()
    today = dt.date.today()
    rows = [runtime_row(rt, today) for rt in matrix.runtimes]
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


def _runtimes(obj: Context, ids: Sequence[str]) -> tuple[Matrix, list[Runtime]]:
    matrix = obj.matrix()
    return matrix, matrix.select(ids, include_deprecated=bool(ids))


@cli.command()
@click.argument("runtimes", nargs=-1)
@arch_option
@click.pass_obj
def render(obj: Context, runtimes: tuple[str, ...], arches: tuple[str, ...]) -> None:
    """Render build contexts (Dockerfile and files) into the work directory."""
    from .rebuild import stage_render

    matrix, selected = _runtimes(obj, runtimes)
    lock = Lock.for_matrix(matrix.path)
    for target in matrix.targets(selected, arches):
        context = stage_render(target, obj.work, lock)
        click.echo(str(context / "Dockerfile"))


@cli.command()
@click.argument("runtimes", nargs=-1)
@arch_option
@click.pass_obj
def base(obj: Context, runtimes: tuple[str, ...], arches: tuple[str, ...]) -> None:
    """Build (Debian) or pull (Amazon Linux) the OS base images and load them into the engine."""
    from .rebuild import stage_base

    matrix, selected = _runtimes(obj, runtimes)
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
    out: Path | None,
    published: str | None,
) -> None:
    """Build images: base, render, fetch inputs, then docker build per architecture."""
    from .incremental import export_cell, published_digest, write_record
    from .rebuild import build_cell, stage_inputs, stage_snapshot, target_dir

    matrix, selected = _runtimes(obj, runtimes)
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
            # (The conformance test stage runs here, before a cell is handed on.)
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
@click.pass_obj
def snapshot(obj: Context, runtimes: tuple[str, ...], arches: tuple[str, ...]) -> None:
    """Export built images as normalized layer tarballs and lay out their branch content."""
    from .rebuild import stage_snapshot
    from .snapshot import assemble_branch

    matrix, selected = _runtimes(obj, runtimes)
    client = connect()
    for rt in selected:
        targets = matrix.targets([rt], arches)
        for target in targets:
            stage_snapshot(target, obj.work, client)
        click.echo(str(assemble_branch(rt, obj.work, [t.arch.name for t in targets])))


@cli.command()
@click.argument("runtimes", nargs=-1, required=True)
@click.option("--git-remote", required=True, help="Git remote URL (file:///… for a local one).")
@click.pass_obj
def branch(obj: Context, runtimes: tuple[str, ...], git_remote: str) -> None:
    """Commit each runtime's snapshot as one orphan commit and force-push its branch."""
    from .branch import push_branch
    from .snapshot import assemble_branch

    matrix, selected = _runtimes(obj, runtimes)
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
@click.pass_obj
def lock(obj: Context, runtimes: tuple[str, ...]) -> None:
    """Pin every downloadable input by sha256 in runtimes.lock.json (needs the network)."""
    from .inputs import lock_pip

    matrix, selected = _runtimes(obj, runtimes)
    lockfile = Lock.for_matrix(matrix.path)
    for rt in selected:
        if not rt.install.pip:
            continue
        for arch in rt.architectures:
            with log.step(f"lock {rt.id}/{arch}"):
                lockfile.pip.setdefault(rt.id, {})[arch] = lock_pip(rt, arch)
    lockfile.save()
    click.echo(str(lockfile.path))


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
) -> None:
    """Every stage for one runtime: base, render, build, snapshot, branch (or --push)."""
    from .rebuild import rebuild as run_rebuild

    if push and not registry:
        raise click.UsageError("--push needs --registry REGISTRY/NAMESPACE")
    matrix = obj.matrix()
    matrix.runtime(runtime)  # an unknown runtime is reported before the engine is needed
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
                "snapshot_bytes": sum(layer.compressed_size for layer in s.layers),
            }
            for b, s in zip(summary.builds, summary.snapshots, strict=True)
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
    for column in ("image", "arch", "image id", "size", "snapshot", "build"):
        table.add_column(column)
    for img in data["images"]:
        table.add_row(
            img["image"],
            img["architecture"],
            img["image_id"][:19],
            log.human_size(img["size"]),
            f"{len(img['layers'])} layers, {log.human_size(img['snapshot_bytes'])}",
            f"{img['build_seconds']:.0f}s",
        )
    log.console.print(table)
    log.info(f"branch content: {summary.branch_dir}")
    if summary.branch:
        state = "pushed" if summary.branch.pushed else "unchanged, not pushed"
        commit = summary.branch.commit[:12]
        log.info(f"branch {summary.runtime} → {summary.branch.remote} {commit} ({state})")


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
