"""The runtime matrix: every runtime of the seed tables with its OS, architectures and SDK,
today's runtimes, deprecation state, `list --json`, the CI job matrix and the README tables."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_runner import isolated_env, lambda_images

from pipeline.docs import runtime_tables, with_tables
from pipeline.errors import InputError, UsageError
from pipeline.matrix import Matrix

REPO = Path(__file__).resolve().parents[2]
TODAY = dt.date(2026, 11, 25)

# The seed's tables: identifier → (operating system, architectures, SDK column).
SEED = {
    "nodejs14.x": ("Amazon Linux 2", ["x86_64", "arm64"], "2.1001.0"),
    "nodejs12.x": ("Amazon Linux 2", ["x86_64", "arm64"], "2.1001.0"),
    "nodejs10.x": ("Amazon Linux 2", ["x86_64"], "2.1001.0"),
    "python3.9": ("Amazon Linux 2", ["x86_64", "arm64"], "boto3-1.18.55 botocore-1.21.55"),
    "python3.8": ("Amazon Linux 2", ["x86_64", "arm64"], "boto3-1.18.55 botocore-1.21.55"),
    "python3.7": ("Amazon Linux", ["x86_64"], "boto3-1.18.55 botocore-1.21.55"),
    "python3.6": ("Amazon Linux", ["x86_64"], "boto3-1.18.55 botocore-1.21.55"),
    "python2.7": ("Amazon Linux", ["x86_64"], "boto3-1.17.100 botocore-1.20.100"),
    "ruby2.7": ("Amazon Linux 2", ["x86_64", "arm64"], "3.0.1"),
    "ruby2.5": ("Amazon Linux", ["x86_64"], "3.0.1"),
    "java11": ("Amazon Linux 2", ["x86_64", "arm64"], "amazon-corretto-11"),
    "java8.al2": ("Amazon Linux 2", ["x86_64", "arm64"], "amazon-corretto-8"),
    "java8": ("Amazon Linux", ["x86_64"], "amazon-corretto-8"),
    "go1.x": ("Amazon Linux", ["x86_64"], None),
    "dotnetcore3.1": ("Amazon Linux 2", ["x86_64", "arm64"], None),
    "dotnetcore2.1": ("Amazon Linux", ["x86_64"], None),
    "provided.al2": ("Amazon Linux 2", ["x86_64", "arm64"], None),
    "provided": ("Amazon Linux", ["x86_64"], None),
}
CURRENT = [
    "python3.10", "python3.11", "python3.12", "python3.13", "nodejs18.x", "nodejs20.x",
    "nodejs22.x", "java17", "java21", "ruby3.2", "ruby3.3", "dotnet8", "provided.al2023",
]  # fmt: skip
DEBIAN = ["provided.debian12", "python3.11.debian12", "nodejs18.x.debian12"]


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return lambda_images(*args, cwd=cwd, env=isolated_env(COLUMNS="200"))


def test_list_json_has_every_seed_runtime_as_the_seed_describes_it() -> None:
    result = cli("--today", TODAY.isoformat(), "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["id"]: r for r in json.loads(result.stdout)}
    for runtime_id, (os_name, arches, sdk) in SEED.items():
        row = rows[runtime_id]
        assert (row["os_name"], row["architectures"], row["sdk"]) == (os_name, arches, sdk)
    for runtime_id in CURRENT + DEBIAN:
        assert runtime_id in rows


# Every runtime AWS has published an image for beyond the seed, with AWS's deprecation date.
SINCE_SEED = {
    "nodejs24.x": ("al2023", "2028-04-30"),
    "nodejs16.x": ("al2", "2024-06-12"),
    "python3.14": ("al2023", "2029-06-30"),
    "java25": ("al2023", "2029-06-30"),
    "ruby3.4": ("al2023", "2028-03-31"),
    "dotnet10": ("al2023", "2028-11-14"),
    "dotnet9": ("al2023", "2026-11-10"),
    "dotnet7": ("al2", "2024-05-14"),
    "dotnet6": ("al2", "2024-12-20"),
    "dotnet5.0": ("al2", "2022-05-10"),
}


def test_list_includes_every_runtime_aws_published_an_image_for() -> None:
    result = cli("--today", TODAY.isoformat(), "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["id"]: r for r in json.loads(result.stdout)}
    assert {rid: (rows[rid]["os"], rows[rid]["deprecation"]) for rid in SINCE_SEED} == SINCE_SEED
    # Debian rows follow their upstreams: Node.js 18's end of life, Debian 12's LTS.
    assert rows["nodejs18.x.debian12"]["deprecation"] == "2025-04-30"
    assert rows["nodejs18.x.debian12"]["state"] == "deprecated"
    assert rows["python3.11.debian12"]["deprecation"] == "2028-06-30"
    assert rows["provided.debian12"]["deprecation"] == "2028-06-30"
    # Rendered for both architectures where AWS publishes both.
    for rid in SINCE_SEED:
        for arch in rows[rid]["architectures"]:
            assert (REPO / "dockerfiles" / rid / arch / "Dockerfile").is_file()


def test_runtimes_since_the_seed_use_amazon_linux_2023_where_aws_does(matrix: Matrix) -> None:
    for runtime_id in ["python3.12", "python3.13", "nodejs20.x", "nodejs22.x", "java21",
                       "ruby3.3", "dotnet8", "provided.al2023"]:  # fmt: skip
        assert matrix.runtime(runtime_id).os.id == "al2023"
    assert all(matrix.runtime(r).deprecation for r in CURRENT)


def test_every_os_declares_how_its_base_is_obtained(matrix: Matrix) -> None:
    from pipeline.matrix import ImageBase, RootfsBase

    systems = matrix.operating_systems
    assert {"al", "al2", "al2023", "debian12"} <= set(systems)
    for os_id in ("al", "al2", "al2023"):
        assert isinstance(systems[os_id].base, ImageBase)
    assert isinstance(systems["debian12"].base, RootfsBase)
    assert systems["al"].architectures == ("x86_64",)


def test_deprecation_state_is_decided_by_the_given_day(matrix: Matrix) -> None:
    dotnet8 = matrix.runtime("dotnet8")  # deprecated 2026-11-10
    assert dotnet8.state(dt.date(2026, 8, 1)) == "supported"
    assert dotnet8.state(dt.date(2026, 9, 1)) == "deprecating"  # within 90 days
    assert dotnet8.state(TODAY) == "deprecated"
    assert matrix.runtime("go1.x").state(TODAY) == "deprecated"
    assert matrix.runtime("provided.debian12").state(TODAY) == "supported"


def test_deprecated_runtimes_are_left_out_unless_asked(matrix: Matrix) -> None:
    default = {rt.id for rt in matrix.select(today=TODAY)}
    assert "python3.13" in default and "python2.7" not in default and "dotnet8" not in default
    everything = {rt.id for rt in matrix.select(include_deprecated=True, today=TODAY)}
    assert everything == {rt.id for rt in matrix.runtimes}
    with pytest.raises(UsageError, match=r"python2\.7 was deprecated on 2021-07-15"):
        matrix.select(["python2.7"], today=TODAY)


def test_list_shows_each_state() -> None:
    result = cli("--today", "2026-09-01", "list")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert lines["dotnet8"].rstrip().endswith("deprecating")
    assert lines["python2.7"].rstrip().endswith("deprecated")
    assert lines["python3.13"].rstrip().endswith("supported")


def test_build_of_a_deprecated_runtime_needs_the_flag() -> None:
    result = cli("--today", TODAY.isoformat(), "build", "python2.7")
    assert result.returncode == 2
    assert "--include-deprecated" in result.stderr


def test_job_matrix_has_one_entry_per_runtime_and_arch_with_its_runner() -> None:
    result = cli("--today", TODAY.isoformat(), "matrix", "--json")
    assert result.returncode == 0, result.stderr
    include = json.loads(result.stdout)["include"]
    assert {"runtime": "python3.13", "arch": "arm64", "runner": "ubuntu-24.04-arm"} in include
    assert {"runtime": "python3.13", "arch": "x86_64", "runner": "ubuntu-24.04"} in include
    assert not [e for e in include if e["runtime"] == "python2.7"]
    keys = [(e["runtime"], e["arch"]) for e in include]
    assert len(keys) == len(set(keys))
    with_old = cli("--today", TODAY.isoformat(), "matrix", "--json", "--include-deprecated")
    assert {"runtime": "python2.7", "arch": "x86_64", "runner": "ubuntu-24.04"} in json.loads(
        with_old.stdout
    )["include"]


def test_readme_tables_equal_what_runtimes_yaml_generates(matrix: Matrix) -> None:
    readme = REPO / "README.md"
    assert with_tables(readme, runtime_tables(matrix)) == readme.read_text()
    assert cli("docs", "--check").returncode == 0


def test_docs_check_fails_when_the_readme_is_stale_and_docs_rewrites_only_the_block(
    tmp_path: Path,
) -> None:
    shutil.copy(REPO / "runtimes.yaml", tmp_path)
    (tmp_path / "README.md").write_text(
        "# Title\n\nintro\n<!-- runtimes:start -->\nold\n<!-- runtimes:end -->\nafter\n"
    )
    stale = cli("docs", "--check", cwd=tmp_path)
    assert stale.returncode == 13
    assert "stale" in stale.stderr
    assert cli("docs", cwd=tmp_path).returncode == 0
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("# Title\n\nintro\n<!-- runtimes:start -->\n")
    assert text.endswith("<!-- runtimes:end -->\nafter\n")
    assert "| Python 2.7 | `python2.7` | boto3-1.17.100 botocore-1.20.100 | Amazon Linux |" in text
    assert cli("docs", "--check", cwd=tmp_path).returncode == 0


def test_an_unlocked_input_stops_the_build_naming_runtime_arch_input_and_command(
    matrix: Matrix, tmp_path: Path
) -> None:
    from conftest import make_run

    from pipeline.orchestrate import fetch_cell_inputs, render_cell

    target = matrix.targets([matrix.runtime("java21")], ["arm64"])[0]
    run = make_run(matrix, tmp_path)
    with pytest.raises(InputError) as info:
        fetch_cell_inputs(run, target, render_cell(run, target))
    message = str(info.value)
    assert message.startswith("java21/arm64: input ")
    assert "unlocked in runtimes.lock.json" in message
    assert "lambda-images lock java21" in message


def test_the_lock_holds_every_input_even_unlocked_ones(matrix: Matrix) -> None:
    raw = json.loads((REPO / "runtimes.lock.json").read_text())
    for rt in matrix.runtimes:
        for item in rt.all_inputs():
            for arch in rt.architectures:
                assert item.key(arch) in raw["inputs"][item.name], (rt.id, item.name)
    assert raw["bases"]["al2023"] == {"arm64": None, "x86_64": None}
    assert raw["npm"]["nodejs18.x.debian12"]
