"""Docs: the README's runtime tables, generated from runtimes.yaml.

The tables sit between ``<!-- runtimes:start -->`` and ``<!-- runtimes:end -->`` in README.md;
nothing else of the README is touched. One table per language family, in the order of
runtimes.yaml, with the seed's columns (name, identifier, SDK where the family has one,
operating system, architectures) plus the deprecation date. No column depends on today's date,
so the README only goes stale when runtimes.yaml changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from .errors import ConfigurationError
from .matrix import Matrix, Runtime

START: Final = "<!-- runtimes:start -->"
END: Final = "<!-- runtimes:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def runtime_tables(matrix: Matrix) -> str:
    """Markdown for every family that has runtimes, in the order families are declared."""
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
                cells.append(rt.sdk or "")
            cells += [
                rt.os.name,
                ", ".join(rt.architectures),
                rt.deprecation.isoformat() if rt.deprecation else "",
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def with_tables(readme: Path, tables: str) -> str:
    """The README's text with the block between the markers replaced by ``tables``."""
    try:
        text = readme.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"{readme}: no such file") from None
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        msg = f"{readme}: expected the markers {START} and {END} (in that order) around the tables"
        raise ConfigurationError(msg)
    return text[: start + len(START)] + "\n" + tables + text[end:]
