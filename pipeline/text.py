"""Text from outside the pipeline (names and versions read from an image's packages, an SBOM a
registry served) made safe for the format it is written into, by whoever writes that format:

- ``plain_line``: one line of plain text (a commit message line): every control, format or
  separator character (newline, ESC, U+2028, a bidirectional override…) shown as its escape
  (``\\n``, ``\\u202e``) instead of obeyed, and the length bounded;
- ``markdown_code``: that line as a CommonMark code span, whose content is shown literally
  (no heading, link, emphasis or HTML can start inside it), fenced with more backticks than the
  text holds in a row (CommonMark 0.31, "Code spans").

Data formats (the SBOM's JSON, the report) keep the text as it is: JSON strings escape it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

LINE_MAX: Final = 300  # characters of one line; the rest is cut, with "…"
# Unicode categories shown escaped: controls, format characters (bidirectional overrides,
# zero-width joiners), line and paragraph separators, surrogates and private-use characters.
_HIDDEN: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _shown(char: str) -> str:
    if unicodedata.category(char) not in _HIDDEN:
        return char
    return char.encode("unicode_escape").decode("ascii")


def plain_line(text: str, limit: int = LINE_MAX) -> str:
    """``text`` as one line of visible text, at most ``limit`` characters."""
    line = "".join(_shown(char) for char in text)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def markdown_code(text: str, limit: int = LINE_MAX) -> str:
    """``text`` as one CommonMark code span: shown as it is, never read as markup."""
    line = plain_line(text, limit)
    if not line:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", line)), default=0) + 1)
    # A span whose content starts or ends with a backtick, or starts and ends with a space,
    # needs one space inside each fence (CommonMark strips exactly one on each side).
    if line[0] == "`" or line[-1] == "`" or (line[0] == " " and line[-1] == " "):
        line = f" {line} "
    return f"{fence}{line}{fence}"
