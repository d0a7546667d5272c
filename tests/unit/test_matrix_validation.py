"""runtimes.yaml validation: each malformed file of tests/matrix_corpus/ gets its own message,
naming the file, the line (marked ``# <- error`` in the file) and the field; exit status 2;
nothing written."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_runner import isolated_env, lambda_images

CORPUS = Path(__file__).parent / "matrix_corpus"
CASES = sorted(CORPUS.glob("*.yaml"))


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return lambda_images(*args, cwd=cwd, env=isolated_env())


def expectation(path: Path) -> tuple[str, int]:
    text = path.read_text()
    fragment = re.search(r"^# expect: (.+)$", text, re.M)
    assert fragment, f"{path.name} has no '# expect:' line"
    lines = [i for i, line in enumerate(text.splitlines(), 1) if line.endswith("# <- error")]
    assert len(lines) == 1, f"{path.name} must mark exactly one line with '# <- error'"
    return fragment.group(1), lines[0]


def test_corpus_has_a_file_per_rule() -> None:
    fragments = [expectation(p)[0] for p in CASES]
    assert len(CASES) == 26
    # Rules are told apart by their messages; two cases (too short, upper case) share the
    # sha256 rule's.
    assert len(set(fragments)) == len(CASES) - 1


@pytest.mark.parametrize("case", CASES, ids=[p.stem for p in CASES])
def test_malformed_matrix_is_refused_with_file_line_and_field(case: Path, tmp_path: Path) -> None:
    fragment, line = expectation(case)
    shutil.copy(case, tmp_path / "runtimes.yaml")
    work = tmp_path / "work"
    result = cli("--matrix", "runtimes.yaml", "--work", str(work), "list", cwd=tmp_path)
    assert result.returncode == 11, result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert f"runtimes.yaml:{line}:" in message
    assert fragment in message
    assert result.stdout == ""


@pytest.mark.parametrize("command", [["render"], ["render", "--contexts"], ["docs"], ["matrix"]])
def test_malformed_matrix_writes_nothing(command: list[str], tmp_path: Path) -> None:
    shutil.copy(CORPUS / "duplicate_id.yaml", tmp_path / "runtimes.yaml")
    (tmp_path / "README.md").write_text("<!-- runtimes:start -->\n<!-- runtimes:end -->\n")
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    result = cli("--work", "work", *command, cwd=tmp_path)
    assert result.returncode == 11
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before  # no work/, no dockerfiles/


def test_lock_with_a_malformed_checksum_is_refused(tmp_path: Path) -> None:
    from pipeline.errors import ConfigurationError
    from pipeline.lock import Lock

    path = tmp_path / "runtimes.lock.json"
    path.write_text('{"version": 1, "inputs": {"rie": {"x86_64": "abc"}}}')
    expected = r"inputs\.rie\.x86_64: 'abc' is not valid; expected 64"
    with pytest.raises(ConfigurationError, match=expected):
        Lock.load(path)


def test_schema_patterns_are_read_as_ecma_262_so_dollar_ends_the_value() -> None:
    """Python's `$` also matches before a final newline; JSON Schema's patterns are ECMA-262,
    whose `$` is the end of the value (and whose `\\d` is ASCII)."""
    from pipeline.schema_errors import validator

    check = validator({"type": "string", "pattern": "^[a-z]+$"})
    assert check.is_valid("abc")
    assert not check.is_valid("abc\n")
    assert not validator({"pattern": "^\\d+$"}).is_valid("\u0661\u0662")
    assert not check.is_valid("ab\ud800")  # a lone surrogate from a JSON escape: no match
