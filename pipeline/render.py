"""Render: runtimes.yaml + templates/ → one build context per target.

A context is ``<work>/<runtime>/<arch>/context/`` holding the rendered ``Dockerfile``, the shared
files of ``templates/files/`` and the family's own files (a bootstrap…). A family file named
``NAME.j2`` is rendered with the Dockerfile's variables and lands in the context as ``NAME``
(a bootstrap that names its runtime, say). Rendering is pure:
the same matrix and templates give the same bytes, with a StrictUndefined environment so a
missing variable is an error rather than an empty string.

The same output for every runtime x architecture is committed under ``dockerfiles/`` so that a
template change is reviewed as a change of the Dockerfiles it produces; ``render --check``
names the files that differ. Checksums are not part of the output: the Dockerfile copies the
pinned inputs from the context and checks them against ``inputs/SHA256SUMS``, which the inputs
stage writes from the lock file. Locking an input therefore never makes the output stale.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jinja2

from .errors import ConfigurationError
from .matrix import TEMPLATES_DIR, Input, Target, Unpack

SHARED_FILES = "files"
TEMPLATE_NAME = "Dockerfile.j2"
RENDERED_DIR: Final = "dockerfiles"
DEFAULT_DESTINATIONS: Final = {"emulator": "/usr/local/bin"}


@dataclass(frozen=True, kw_only=True)
class InputView:
    """An input as a template sees it, for one architecture."""

    name: str
    version: str
    source: str  # its URL, or the Go module it is built from
    filename: str
    unpack: Unpack | None
    install_as: str | None

    @classmethod
    def of(cls, item: Input, arch: str) -> InputView:
        return cls(
            name=item.name,
            version=item.version,
            source=item.source(arch),
            filename=item.filename(arch),
            unpack=item.unpack,
            install_as=item.install_as,
        )


@dataclass(frozen=True, kw_only=True)
class ContextFile:
    """A file of the build context: copied from templates/ or rendered from a ``.j2`` there."""

    data: bytes
    executable: bool


@dataclass(frozen=True, kw_only=True)
class Rendered:
    target: Target
    dockerfile: str
    files: dict[str, ContextFile]  # name in the context → its content and mode


@functools.lru_cache(maxsize=8)
def _environment(templates_dir: Path) -> jinja2.Environment:
    """One environment per templates folder and process: a template is compiled once, not once
    per target (Jinja re-reads a template whose file changed: auto_reload)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render_target(target: Target, *, templates_dir: Path = TEMPLATES_DIR) -> Rendered:
    runtime = target.runtime
    family_dir = templates_dir / runtime.family.template
    variables = {
        "runtime": runtime,
        "family": runtime.family,
        "os": runtime.os,
        "arch": target.arch,
        "base_image": target.base_image,
        "inputs": {
            role: [InputView.of(i, target.arch.name) for i in group]
            for role, group in runtime.inputs
        },
        "staged_inputs": bool(runtime.all_inputs()),
        "destinations": {**DEFAULT_DESTINATIONS, **dict(runtime.family.destinations)},
    }
    environment = _environment(templates_dir)
    text = _render(environment, f"{runtime.family.template}/{TEMPLATE_NAME}", variables, target)
    files: dict[str, ContextFile] = {}
    for folder in (templates_dir / SHARED_FILES, family_dir):
        for src in sorted(folder.iterdir()):
            if not src.is_file() or src.name == TEMPLATE_NAME:
                continue
            executable = bool(src.stat().st_mode & 0o111)
            if src.suffix == ".j2":
                name = f"{folder.name}/{src.name}"
                data = _render(environment, name, variables, target).encode()
                files[src.stem] = ContextFile(data=data, executable=executable)
            else:
                files[src.name] = ContextFile(data=src.read_bytes(), executable=executable)
    return Rendered(target=target, dockerfile=_tidy(text), files=files)


def _render(
    environment: jinja2.Environment, name: str, variables: dict[str, object], target: Target
) -> str:
    """One template of templates/ rendered for ``target``; errors name the template."""
    try:
        return environment.get_template(name).render(**variables)
    except jinja2.TemplateSyntaxError as exc:
        where = f"templates/{exc.name or name}:{exc.lineno}"
        raise ConfigurationError(f"{where}: template syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise ConfigurationError(f"templates/{name}: {exc.message} ({target.key})") from None
    except jinja2.TemplateNotFound as exc:
        raise ConfigurationError(f"templates/{name}: missing template {exc.name}") from None


def _tidy(text: str) -> str:
    """One blank line at most between instructions, one newline at the end."""
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line == "" and (not out or out[-1] == ""):
            continue
        out.append(line)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def write_context(rendered: Rendered, context_dir: Path) -> Path:
    """Write (or refresh) a build context; files the template set no longer has are removed."""
    context_dir.mkdir(parents=True, exist_ok=True)
    keep = {"Dockerfile", "runtime", "node_modules", "inputs", "package-manager", *rendered.files}
    for existing in context_dir.iterdir():
        if existing.name not in keep:
            if existing.is_dir():
                shutil.rmtree(existing)
            else:
                existing.unlink()
    (context_dir / "Dockerfile").write_text(rendered.dockerfile, encoding="utf-8", newline="\n")
    for name, file in rendered.files.items():
        dst = context_dir / name
        dst.write_bytes(file.data)
        dst.chmod(0o755 if file.executable else 0o644)
    return context_dir


def rendered_files(
    targets: Iterable[Target], *, templates_dir: Path = TEMPLATES_DIR
) -> dict[str, bytes]:
    """The committed output: ``<runtime>/<arch>/Dockerfile`` and the files it copies."""
    out: dict[str, bytes] = {}
    for target in targets:
        rendered = render_target(target, templates_dir=templates_dir)
        folder = f"{target.runtime.id}/{target.arch.name}"
        out[f"{folder}/Dockerfile"] = rendered.dockerfile.encode()
        for name, file in rendered.files.items():
            out[f"{folder}/{name}"] = file.data
    return dict(sorted(out.items()))


def stale_files(expected: dict[str, bytes], folder: Path) -> list[str]:
    """Paths under ``folder`` that differ from ``expected``, are missing, or should not exist."""
    present = (
        {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        if folder.is_dir()
        else set()
    )
    stale = [
        rel
        for rel, data in expected.items()
        if rel not in present or (folder / rel).read_bytes() != data
    ]
    stale += [rel for rel in present if rel not in expected]
    return sorted(stale)


def write_rendered(expected: dict[str, bytes], folder: Path) -> list[str]:
    """Make ``folder`` hold exactly ``expected``; returns the paths it changed."""
    changed = stale_files(expected, folder)
    for rel in changed:
        path = folder / rel
        if rel not in expected:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(expected[rel])
        executable = rel.rsplit("/", 1)[-1] != "Dockerfile" and expected[rel].startswith(b"#!")
        path.chmod(0o755 if executable else 0o644)
    for sub in sorted(folder.rglob("*"), reverse=True):
        if sub.is_dir() and not any(sub.iterdir()):
            sub.rmdir()
    return changed
