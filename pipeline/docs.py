"""Docs: the tables generated from the project's data, and checked by ``docs --check``.

- README.md, between ``<!-- runtimes:start -->`` and ``<!-- runtimes:end -->``: the runtime
  tables, from runtimes.yaml;
- docs/emulator.md, between ``<!-- checks:start -->`` and ``<!-- checks:end -->``: the
  conformance checks, from ``conformance.CHECKS`` (given by the caller as markdown).

Nothing else of those files is touched. One table per language family, in the order of
runtimes.yaml, with the seed's columns (name, identifier, SDK where the family has one,
operating system, architectures) plus the deprecation date. The SDK column is what the lock
pins (pins.sdk_column), so the README goes stale when runtimes.yaml or the lock changes (the
weekly lock job regenerates it with the lock); no column depends on today's date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from .errors import ConfigurationError
from .lock import Lock
from .matrix import Matrix, Runtime
from .pins import sdk_column

START: Final = "<!-- runtimes:start -->"
END: Final = "<!-- runtimes:end -->"
CHECKS_START: Final = "<!-- checks:start -->"
CHECKS_END: Final = "<!-- checks:end -->"
CHECKS_DOC: Final = Path("docs/emulator.md")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def runtime_tables(matrix: Matrix, lock: Lock) -> str:
    """Markdown for every family that has runtimes, in the order families are declared; the
    SDK column as the lock pins it (pins.sdk_column), else as runtimes.yaml writes it."""
    blocks = ["<!-- Generated from runtimes.yaml by `lambda-images docs`; do not edit. -->"]
    for family in matrix.families.values():
        rows: list[Runtime] = [rt for rt in matrix.runtimes if rt.family.id == family.id]
        if not rows:
            continue
        header = ["Name", "Identifier"]
        if family.sdk:
            header.append(family.sdk)
        header += ["Operating system", "Architectures", "Deprecation"]
        lines = [
            f"**{family.name} runtimes**",
            "",
            "| " + " | ".join(header) + " |",
            "| " + " | ".join("---" for _ in header) + " |",
        ]
        for rt in rows:
            cells = [rt.name, f"`{rt.id}`"]
            if family.sdk:
                cells.append(sdk_column(rt, lock) or rt.sdk or "")
            cells += [
                rt.os.name,
                ", ".join(rt.architectures),
                rt.deprecation.isoformat() if rt.deprecation else ("preview" if rt.preview else ""),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def with_tables(readme: Path, tables: str, start_marker: str = START, end_marker: str = END) -> str:
    """The file's text with the block between the markers replaced by ``tables``."""
    try:
        text = readme.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"{readme}: no such file") from None
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        msg = (
            f"{readme}: expected the markers {start_marker} and {end_marker} (in that order) "
            "around the tables"
        )
        raise ConfigurationError(msg)
    return text[: start + len(start_marker)] + "\n" + tables + text[end:]


def generated_docs(
    matrix: Matrix, lock: Lock, readme: Path | None, checks_table: str
) -> list[tuple[Path, str]]:
    """(file, its text with the generated tables) for every file that has some (the checks'
    table where the matrix sits in the project's checkout, beside docs/)."""
    root = matrix.path.parent
    readme = readme or root / "README.md"
    files = [(readme, with_tables(readme, runtime_tables(matrix, lock)))]
    checks = root / CHECKS_DOC
    if checks.is_file():
        header = (
            "<!-- Generated from conformance.CHECKS by `lambda-images docs`; do not edit. -->\n"
        )
        files.append((checks, with_tables(checks, header + checks_table, CHECKS_START, CHECKS_END)))
    return files
