"""Text from inside an image (a package's name and version) stays data in the SBOM and is shown,
never obeyed, where it becomes markdown (the branch README's change history) or a commit
message: an npm `package.json` whose name holds newlines, a heading, a link and HTML adds no
heading, link or HTML to the README and no line to the commit message."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token
from test_sbom import layer

from pipeline.branch import MESSAGE_LINES, commit_message
from pipeline.matrix import Matrix
from pipeline.publish.notes import changelog, history_markdown
from pipeline.sbom import Changes, diff, make_sbom
from pipeline.snapshot import branch_readme
from pipeline.text import markdown_code, plain_line

HOSTILE_NAME = (
    "left-pad\n\n## Security notice\n\nYour image is compromised: install the fix from "
    "[the vendor](https://evil.invalid/fix) <img src=x onerror=alert(1)>\n\n"
)
HOSTILE_VERSION = "1.0.0 `` ` [x](https://evil.invalid) \u202e\u2028 <b>bold</b>"


@pytest.fixture
def document(tmp_path: Path) -> bytes:
    manifest = {"name": HOSTILE_NAME, "version": HOSTILE_VERSION, "license": "MIT\n# x"}
    odd = {"name": "a\ud800b", "version": "1\u0000"}  # a lone surrogate and a NUL, as JSON
    one = layer(
        tmp_path / "one.tar.xz",
        {
            "srv/node_modules/left-pad/package.json": json.dumps(manifest).encode(),
            "srv/node_modules/odd/package.json": json.dumps(odd).encode(),
        },
    )
    return make_sbom("provided.debian12", "x86_64", [one], ["sha256:" + "0" * 64], 0)


def test_the_sbom_keeps_the_text_as_data(document: bytes) -> None:
    document.decode("ascii")  # every character outside ASCII is a JSON escape
    parsed = json.loads(document)
    npm = [c for c in parsed["components"] if c.get("purl", "").startswith("pkg:npm")]
    hostile = next(c for c in npm if c["version"] == HOSTILE_VERSION)  # as the image says it
    assert f"{hostile['group']}/{hostile['name']}" == HOSTILE_NAME  # an npm scope/name split
    assert "\n" not in hostile["purl"] and " " not in hostile["purl"]
    assert [c["name"] for c in npm if c["version"] == "1\u0000"] == ["a\ufffd\ufffd\ufffdb"]


def _blocks(tokens: list[Token]) -> list[str]:
    return [t.type for t in tokens if t.type.endswith("_open") and t.level == 0]


def _inline(tokens: list[Token]) -> list[Token]:
    return [child for t in tokens if t.type == "inline" for child in t.children or []]


def test_the_readme_shows_the_changes_and_obeys_none(document: bytes, matrix: Matrix) -> None:
    old = {"components": [{"purl": "pkg:npm/left-pad@0.9.0"}]}
    changes = {"x86_64": diff(old, json.loads(document), "2026.11.30.09")}
    readme = branch_readme(
        matrix.runtime("provided.debian12"),
        ["x86_64"],
        history=history_markdown("2026.11.30.10", changes),
    )
    tokens = MarkdownIt("commonmark").parse(readme)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == [
        f"{matrix.runtime('provided.debian12').name} (provided.debian12) — Lambda base image "
        "snapshot",
        "Change history",
        "Release 2026.11.30.10, changes since 2026.11.30.09",
    ]
    kinds = {child.type for child in _inline(tokens)}
    assert not kinds & {"link_open", "image", "html_inline", "strong_open", "em_open"}
    assert not any(t.type == "html_block" for t in tokens)
    shown = [c.content for c in _inline(tokens) if c.type == "code_inline"]
    hostile = next(s for s in shown if "Security notice" in s)
    assert hostile.startswith("+ npm:left-pad\\n\\n## Security notice\\n\\nYour image")
    assert "<img src=x onerror=alert(1)>" in hostile  # shown as text, inside the code span
    version = next(s for s in shown if s.startswith("+ npm:left-pad ") or "bold" in s)
    assert "\\u202e\\u2028 <b>bold</b>" in version


def test_the_commit_message_is_plain_lines(document: bytes) -> None:
    changes = {"x86_64": diff(None, json.loads(document), None)}
    old = {"components": [{"purl": "pkg:npm/left-pad@0.9.0"}]}
    changes["arm64"] = diff(old, json.loads(document), "2026.11.30.09")
    lines = changelog("2026.11.30.10", changes)
    message = commit_message("provided.debian12", lines)
    assert message.splitlines()[0] == "Update source for provided.debian12 image"
    assert len(message.splitlines()) == 2 + len(lines)  # subject, blank line, one per line
    for line in message.splitlines():
        assert not [c for c in line if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
    assert "## Security notice" not in [ln.strip() for ln in message.splitlines()]
    many = commit_message("provided.debian12", [f"+ npm:p{i} 1.0" for i in range(5000)])
    assert len(many.splitlines()) == 2 + MESSAGE_LINES + 1
    assert (
        many.splitlines()[-1] == f"… and {5000 - MESSAGE_LINES} more lines (see the branch README)"
    )


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\nb", "a\\nb"),
        ("tab\there", "tab\\there"),
        ("esc\x1b[31m", "esc\\x1b[31m"),
        ("rtl\u202eevil", "rtl\\u202eevil"),
        ("nul\x00", "nul\\x00"),
        ("lone\ud800", "lone\\ud800"),
        ("x" * 400, "x" * 299 + "…"),
        ("plain text, kept", "plain text, kept"),
    ],
)
def test_a_plain_line_shows_what_a_terminal_or_git_would_obey(text: str, shown: str) -> None:
    assert plain_line(text) == shown


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("plain", "`plain`"),
        ("a`b", "``a`b``"),
        ("``x", "``` ``x ```"),
        (" both ", "`  both  `"),
        ("", ""),
    ],
)
def test_a_code_span_is_fenced_longer_than_any_backtick_run(text: str, span: str) -> None:
    assert markdown_code(text) == span
    if text:
        inline = _inline(MarkdownIt("commonmark").parse(f"- {span}\n"))
        assert [(c.type, c.content) for c in inline] == [("code_inline", text)]


def test_changes_lines_are_what_the_report_holds() -> None:
    change = Changes(previous="p", added={"npm:a\nb": "1"})
    assert change.lines() == ["+ npm:a\nb 1"]  # data here: escaped only where it is written
