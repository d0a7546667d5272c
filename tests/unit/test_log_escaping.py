"""Whatever a message quotes (a registry's error, a tool's output, a file name), the log gets one
line of it: no line break, no terminal escape sequence, no invisible reordering character, and
on GitHub Actions no workflow command but the ones the log itself writes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pipeline import log

HOSTILE = "a\nb\r\n::add-mask::hunter2\n::error::forged \x1b[2J\x1b]0;t\x07 \u202eexe.gnp %0A::x"
ESCAPED = (
    "a\\nb\\r\\n::add-mask::hunter2\\n::error::forged \\x1b[2J\\x1b]0;t\\x07 \\u202eexe.gnp %0A::x"
)


@pytest.fixture(params=[False, True], ids=["terminal", "github-actions"])
def github(request: pytest.FixtureRequest) -> Iterator[bool]:
    log.configure(github_actions=request.param)
    yield request.param
    log.configure(github_actions=False)


def test_one_line_shows_every_unprintable_character_as_its_escape() -> None:
    assert log.one_line(HOSTILE) == ESCAPED
    assert log.one_line("tab\tstays, café stays") == "tab\tstays, café stays"


@pytest.mark.parametrize(
    "write",
    [log.info, log.detail, log.warning, log.error, lambda m: log.command(["echo", m])],
    ids=["info", "detail", "warning", "error", "command"],
)
def test_a_hostile_message_is_one_line_and_no_workflow_command(
    write: Callable[[str], None], github: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    write(HOSTILE)
    write("::add-mask::starts-the-line")
    out, err = capfd.readouterr()
    assert "\x1b" not in out + err and "\u202e" not in out + err
    commands = [line for line in (out + err).splitlines() if line.lstrip().startswith("::")]
    ours = ("::error::", "::warning::") if github else ()
    assert all(line.startswith(ours) for line in commands) if ours else commands == []
    assert len([line for line in err.splitlines() if line.strip()]) == (
        0 if github and write is log.warning else 2
    )
    if github and write in (log.warning, log.error):
        assert "%250A::x" in out  # GitHub's escaping of %: the text stays text


def test_a_step_title_is_one_line(github: bool, capfd: pytest.CaptureFixture[str]) -> None:
    with log.step(HOSTILE):
        pass
    out, err = capfd.readouterr()
    assert len((out + err).strip().splitlines()) == (3 if github else 2)
    assert "\x1b" not in out + err
