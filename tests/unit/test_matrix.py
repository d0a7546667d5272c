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

from pipeline.build import SDK_LABEL, image_labels
from pipeline.docs import runtime_tables, with_tables
from pipeline.errors import InputError, UsageError
from pipeline.lock import Lock
from pipeline.matrix import Matrix
from pipeline.settings import Settings

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
    states = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:]}
    assert states["dotnet8"] == "deprecating"
    assert states["python2.7"] == "deprecated"
    assert states["python3.13"] == "supported"


def test_build_of_a_deprecated_runtime_needs_the_flag() -> None:
    result = cli("--today", TODAY.isoformat(), "build", "python2.7")
    assert result.returncode == 2
    assert "--include-deprecated" in result.stderr


def test_job_matrix_has_one_entry_per_runtime_and_arch_with_its_runner() -> None:
    result = cli("--today", TODAY.isoformat(), "matrix", "--json")
    assert result.returncode == 0, result.stderr
    include = json.loads(result.stdout)["include"]
    jobs = {(e["runtime"], e["arch"]): e for e in include}
    assert len(jobs) == len(include)
    assert jobs["python3.11.debian12", "arm64"] == {
        "runtime": "python3.11.debian12", "arch": "arm64", "runner": "ubuntu-24.04-arm",
        "locked": True,
    }  # fmt: skip
    assert jobs["python3.11.debian12", "x86_64"]["runner"] == "ubuntu-24.04"
    assert not [e for e in include if e["runtime"] == "python2.7"]
    with_old = cli("--today", TODAY.isoformat(), "matrix", "--json", "--include-deprecated")
    assert ("python2.7", "x86_64", "ubuntu-24.04") in {
        (e["runtime"], e["arch"], e["runner"]) for e in json.loads(with_old.stdout)["include"]
    }


def test_a_cell_whose_inputs_are_unlocked_says_so_in_the_job_matrix() -> None:
    """python3.13 (Amazon Linux 2023) pins its base by a digest the lock does not hold here, and
    its CPython download: `matrix` marks its cells unlocked, with the lock's own message."""
    lock = json.loads((REPO / "runtimes.lock.json").read_text())
    assert lock["bases"]["al2023"]["arm64"] is None
    result = cli("--today", TODAY.isoformat(), "matrix", "python3.13", "--arch=aarch64", "--json")
    assert result.returncode == 0, result.stderr
    [job] = json.loads(result.stdout)["include"]
    assert (job["runtime"], job["arch"], job["locked"]) == ("python3.13", "arm64", False)
    assert job["unlocked"].startswith("python3.13/arm64: ")
    assert "unlocked in runtimes.lock.json" in job["unlocked"]
    # For people: a row per cell, whole when piped.
    table = cli("--today", TODAY.isoformat(), "matrix", "python3.13", "provided.debian12")
    rows = {tuple(line.split()[:3]): line for line in table.stdout.splitlines()[1:]}
    assert rows["python3.13", "arm64", "ubuntu-24.04-arm"].split()[3] == "unlocked:"
    assert rows["provided.debian12", "x86_64", "ubuntu-24.04"].split()[3:] == ["locked"]


def test_the_sdk_column_is_what_the_lock_pins(matrix: Matrix, tmp_path: Path) -> None:
    raw = json.loads((REPO / "runtimes.lock.json").read_text())
    (s3,) = [p["url"] for p in raw["npm"]["nodejs22.x"] if p["path"] == S3]
    node_sdk = s3.rsplit("/client-s3-", 1)[1].removesuffix(".tgz")
    wheels = dict(f["filename"].split("-")[:2] for f in raw["pip"]["python3.12"]["x86_64"])
    rows = {r["id"]: r for r in json.loads(cli("list", "--json").stdout)}
    assert rows["nodejs22.x"]["sdk"] == node_sdk
    assert rows["python3.12"]["sdk"] == f"boto3-{wheels['boto3']} botocore-{wheels['botocore']}"
    row = "| Node.js 22 | `nodejs22.x` | {} | Amazon Linux 2023 |"
    assert row.format(node_sdk) in (REPO / "README.md").read_text()
    # A new lock moves the column, so the README's tables are stale until `lambda-images docs`
    # writes them again (test_docs_check_fails_when_the_readme_is_stale… covers that command).
    moved = tmp_path / "runtimes.lock.json"
    text = (REPO / "runtimes.lock.json").read_text()
    moved.write_text(text.replace(s3, s3.replace(node_sdk, "3.9999.0")))
    tables = runtime_tables(matrix, Lock.load(moved))
    assert row.format("3.9999.0") in tables
    assert with_tables(REPO / "README.md", tables) != (REPO / "README.md").read_text()


def test_each_image_is_labelled_with_the_sdk_the_lock_pins(matrix: Matrix) -> None:
    lock, settings = Lock.for_matrix(matrix.path), Settings.from_environ({})
    labels = {
        rid: image_labels(target, settings, lock).get(SDK_LABEL)
        for rid in ("nodejs22.x", "python3.12", "java21", "provided.al2023")
        for target in matrix.targets([matrix.runtime(rid)], ["x86_64"])
    }
    raw = json.loads((REPO / "runtimes.lock.json").read_text())
    (s3,) = [p["url"] for p in raw["npm"]["nodejs22.x"] if p["path"] == S3]
    wheels = dict(f["filename"].split("-")[:2] for f in raw["pip"]["python3.12"]["x86_64"])
    assert labels == {
        "nodejs22.x": s3.rsplit("/client-s3-", 1)[1].removesuffix(".tgz"),
        "python3.12": f"boto3-{wheels['boto3']} botocore-{wheels['botocore']}",
        "java21": "amazon-corretto-21",
        "provided.al2023": None,
    }


S3 = "node_modules/@aws-sdk/client-s3"


def test_readme_tables_equal_what_runtimes_yaml_generates(matrix: Matrix) -> None:
    readme = REPO / "README.md"
    lock = Lock.for_matrix(matrix.path)
    assert with_tables(readme, runtime_tables(matrix, lock)) == readme.read_text()
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


# AWS's Supported runtimes table as it stood in August 2026 (runtimes.yaml says where it was
# read): every runtime it lists → operating system, deprecation date (None: "Not scheduled",
# a preview runtime) and whether it is a preview.
AWS_2026_08 = {
    "nodejs26.x": ("al2023", None, True),
    "nodejs24.x": ("al2023", "2028-04-30", False),
    "nodejs22.x": ("al2023", "2027-04-30", False),
    "python3.15": ("al2023", None, True),
    "python3.14": ("al2023", "2029-06-30", False),
    "python3.13": ("al2023", "2029-06-30", False),
    "python3.12": ("al2023", "2028-10-31", False),
    "python3.11": ("al2", "2027-06-30", False),
    "python3.10": ("al2", "2026-10-31", False),
    "java25": ("al2023", "2029-06-30", False),
    "java21": ("al2023", "2029-06-30", False),
    "java17.al2023": ("al2023", "2029-06-30", False),
    "java11.al2023": ("al2023", "2029-06-30", False),
    "java8.al2023": ("al2023", "2029-06-30", False),
    "java17": ("al2", "2027-06-30", False),
    "java11": ("al2", "2027-06-30", False),
    "java8.al2": ("al2", "2027-06-30", False),
    "dotnet10": ("al2023", "2028-11-14", False),
    "dotnet9": ("al2023", "2026-11-10", False),
    "dotnet8": ("al2023", "2026-11-10", False),
    "ruby4.0": ("al2023", "2029-03-31", False),
    "ruby3.4": ("al2023", "2028-03-31", False),
    "ruby3.3": ("al2023", "2027-03-31", False),
    "provided.al2023": ("al2023", "2029-06-30", False),
}
# Rows that table added or re-dated since the matrix was written: each names it as its source.
FROM_THE_2026_08_TABLE = [
    "nodejs26.x", "python3.15", "python3.11", "python3.10", "ruby4.0", "java17.al2023",
    "java11.al2023", "java8.al2023", "java17", "java11", "java8.al2", "provided.al2",
]  # fmt: skip


def test_each_runtime_aws_lists_is_a_row_with_its_date_and_source(matrix: Matrix) -> None:
    rows = {
        rid: (rt.os.id, rt.deprecation.isoformat() if rt.deprecation else None, rt.preview)
        for rid in AWS_2026_08
        for rt in [matrix.runtime(rid)]
    }
    assert rows == AWS_2026_08
    assert matrix.runtime("provided.al2").deprecation == dt.date(2026, 7, 31)
    lines = (REPO / "runtimes.yaml").read_text().splitlines()
    for rid in FROM_THE_2026_08_TABLE:
        (line,) = [ln for ln in lines if ln.startswith(f"  - id: {rid} ")]
        assert "AWS's table, 2026-08 (see above)" in line, line
    for rid in AWS_2026_08:
        for arch in matrix.runtime(rid).architectures:
            assert (REPO / "dockerfiles" / rid / arch / "Dockerfile").is_file()


def test_a_preview_runtime_is_listed_as_preview_and_never_a_familys_latest(
    tmp_path: Path,
) -> None:
    result = cli("--today", TODAY.isoformat(), "list", "--json")
    rows = {r["id"]: r for r in json.loads(result.stdout)}
    assert [(rows[r]["state"], rows[r]["tag"]) for r in ("nodejs26.x", "python3.15")] == [
        ("preview", "26-preview"),
        ("preview", "3.15-preview"),
    ]
    text = (REPO / "runtimes.yaml").read_text()
    shutil.copy(REPO / "runtimes.yaml", tmp_path)
    (tmp_path / "runtimes.yaml").write_text(
        text.replace("latest: nodejs24.x", "latest: nodejs26.x")
    )
    line = text[: text.index("latest: nodejs24.x")].count("\n") + 1
    result = cli("--matrix", str(tmp_path / "runtimes.yaml"), "list")
    assert result.returncode == 11
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'runtimes.yaml'}:{line}: families.nodejs.latest: nodejs26.x is a "
        "preview runtime, never published as latest; expected a runtime of nodejs without "
        "`preview: true`"
    )
