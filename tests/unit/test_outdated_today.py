"""`lambda-images outdated --only inputs` on the project's own runtimes.yaml and lock, against
registries that list what PyPI, npm, Maven Central and the Go module proxy listed in 2026-10/11
(issue 24's figures): with the pins issue 24 found, each stale runtime client and SDK is named
`pinned → newest`, with the runtimes that pin it, and the command exits 14; with the pins
committed since `lock --upgrade`, none is. The registries are one stand-in on 127.0.0.1;
nodejs.org is left unanswered, which is one line, not a failure."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.version import Version
from servers import StandIn

from pipeline import orchestrate as do
from pipeline import show
from pipeline.errors import OutdatedError
from pipeline.matrix import Runtime
from pipeline.pins import MavenCoordinates, maven_bases, nodejs_bases, nodejs_version
from pipeline.settings import Settings, Upstreams

REPO = Path(__file__).resolve().parents[2]
TODAY = dt.date(2026, 11, 15)

# (registry, package) → the newest stable release it listed in 2026-10/11.
NEWEST = {
    ("PyPI", "awslambdaric"): "4.2.2",
    ("PyPI", "boto3"): "1.44.5",
    ("PyPI", "botocore"): "1.44.5",
    ("npm", "aws-lambda-ric"): "4.0.2",
    ("Maven Central", "aws-lambda-java-runtime-interface-client"): "2.10.1",
    ("Maven Central", "aws-lambda-java-serialization"): "1.4.1",
    ("Go module proxy", "github.com/aws/aws-lambda-go"): "v1.55.1",
}
# The name `outdated` prints for each (an input's name where runtimes.yaml names the input).
SHOWN = {
    "aws-lambda-java-runtime-interface-client": "java-ric",
    "aws-lambda-java-serialization": "java-serialization",
    "github.com/aws/aws-lambda-go": "aws-lambda-go",
}
MAVEN = "/maven2/com/amazonaws"
RIE = "github.com/aws/aws-lambda-runtime-interface-emulator"


def yaml_input(name: str) -> str:
    """An input's version as runtimes.yaml writes it."""
    text = (REPO / "runtimes.yaml").read_text()
    match = re.search(rf"^  {re.escape(name)}:.*\n(?:    #.*\n)*    version: (\S+)", text, re.M)
    assert match, name
    return match[1]


def pinned(registry: str, package: str, rows: list[Runtime], go_mod: Path) -> dict[str, list[str]]:
    """Each version the data pins ``package`` at → the runtimes that pin it (a runtime whose
    ``upgrade_below`` bounds the package is left out: it is never behind)."""
    if registry == "PyPI":
        found = [(s.split("==")[1], rt) for rt in rows for s in rt.install.pip
                 if s.startswith(f"{package}==")]  # fmt: skip
    elif registry == "npm":
        found = [(s.rpartition("@")[2], rt) for rt in rows for s in rt.install.npm
                 if s.startswith(f"{package}@")]  # fmt: skip
    elif registry == "Maven Central":
        name = SHOWN[package]
        found = [(i.version, rt) for rt in rows for i in rt.all_inputs() if i.name == name]
    else:
        match = re.search(
            rf"^\s*(?:require\s+)?{re.escape(package)} (v\S+)", go_mod.read_text(), re.M
        )
        assert match
        found = [(match[1], rt) for rt in rows if rt.family.id == "go"]
    versions: dict[str, list[str]] = {}
    for version, rt in found:
        if package not in dict(rt.upgrade_below):
            versions.setdefault(version, []).append(rt.id)
    return versions


# What issue 24 found pinned (before `lock --upgrade`): runtimes.yaml's text → the issue's.
ISSUE_PINS = [
    ("awslambdaric==4.2.2", "awslambdaric==3.1.1"),
    ("boto3==1.44.18", "boto3==1.35.99"),
    ("botocore==1.44.18", "botocore==1.35.99"),
    ("aws-lambda-ric@4.0.2", "aws-lambda-ric@3.3.0"),
    ("runtime-interface-client/2.10.1/aws-lambda-java-runtime-interface-client-2.10.1",
     "runtime-interface-client/2.6.0/aws-lambda-java-runtime-interface-client-2.6.0"),
    ("serialization/1.4.1/aws-lambda-java-serialization-1.4.1",
     "serialization/1.1.5/aws-lambda-java-serialization-1.1.5"),
]  # fmt: skip


@pytest.fixture(params=["today", "before the upgrade"])
def matrix(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The project's runtimes.yaml (and lock, templates) as committed, or with issue 24's pins."""
    if request.param == "today":
        return REPO / "runtimes.yaml"
    text = (REPO / "runtimes.yaml").read_text()
    for now, then in ISSUE_PINS:
        assert now in text, now
        text = text.replace(now, then)
    text = text.replace("version: 2.10.1", "version: 2.6.0").replace(
        "version: 1.4.1", "version: 1.1.5"
    )
    (tmp_path / "runtimes.yaml").write_text(text)
    shutil.copy(REPO / "runtimes.lock.json", tmp_path / "runtimes.lock.json")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    go_mod = tmp_path / "templates/go/probe/go.mod"
    go_mod.write_text(go_mod.read_text().replace("aws-lambda-go v1.55.1", "aws-lambda-go v1.54.0"))
    return tmp_path / "runtimes.yaml"


@pytest.fixture
def registries() -> Iterator[StandIn]:
    lock = json.loads((REPO / "runtimes.lock.json").read_text())
    (s3,) = {p["url"] for p in lock["npm"]["nodejs22.x"] if p["path"].endswith("/client-s3")}
    s3_version = s3.rsplit("client-s3-", 1)[1].removesuffix(".tgz")
    with StandIn() as server:
        files = [{"filename": "f.whl", "digests": {"sha256": "0" * 64}}]
        routes = {
            f"/pypi/{p}/json": json.dumps({"releases": {v: files}}).encode()
            for (r, p), v in NEWEST.items()
            if r == "PyPI"
        }
        routes["/npm/aws-lambda-ric"] = json.dumps({"versions": {"4.0.2": {}}}).encode()
        routes["/npm/@aws-sdk%2Fclient-s3"] = json.dumps({"versions": {s3_version: {}}}).encode()
        metadata = "<metadata><versioning><versions><version>{}</version></versions></versioning></metadata>"  # noqa: E501
        for artifact, version in [
            ("aws-lambda-java-runtime-interface-client", "2.10.1"),
            ("aws-lambda-java-serialization", "1.4.1"),
            ("aws-lambda-java-core", yaml_input("java-core")),  # current
        ]:
            routes[f"{MAVEN}/{artifact}/maven-metadata.xml"] = metadata.format(version).encode()
        routes["/go/github.com/aws/aws-lambda-go/@v/list"] = b"v1.54.0\nv1.55.1\nv1.56.0-rc.1\n"
        routes[f"/go/{RIE}/@v/list"] = b""  # no tagged release: @latest's pseudo-version
        routes[f"/go/{RIE}/@latest"] = json.dumps({"Version": yaml_input("rie")}).encode()
        server.routes = routes
        yield server


def test_outdated_names_each_stale_client_and_sdk_and_none_after_the_upgrade(
    registries: StandIn, matrix: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = registries.url
    settings = Settings.from_environ({
        "LAMBDA_IMAGES_MATRIX": str(matrix),
        "LAMBDA_IMAGES_PYPI_URL": f"{base}/pypi",
        "npm_config_registry": f"{base}/npm/",
        "LAMBDA_IMAGES_MAVEN_URL": f"{base}/maven2",
        "LAMBDA_IMAGES_NODEJS_DIST_URL": f"{base}/nodejs-unanswered",
        "GOPROXY": f"{base}/go",
    })  # fmt: skip
    settings = dataclasses.replace(settings, today=TODAY)
    run = do.Run.open(settings)
    rows = [rt for rt in run.matrix.runtimes if rt.state(settings.today) != "deprecated"]
    found = do.outdated(
        run, do.OutdatedRequest(cells=do.Cells(runtimes=tuple(rows)), only="inputs")
    )
    show.outdated(found)
    lines = capsys.readouterr().out.splitlines()
    behind = {}
    for line in lines[1:]:
        match = re.fullmatch(r"  (\S+)\t(\S+) → (\S+)\t\(([^:]+): (.*)\)", line)
        if match:
            behind[match[1]] = (match[2], match[3], match[4], match[5].split(", "))
    expected = {}
    for (registry, package), newest in NEWEST.items():
        go_mod = matrix.parent / "templates/go/probe/go.mod"
        for version, runtimes in pinned(registry, package, rows, go_mod).items():
            if Version(version.removeprefix("v")) < Version(newest.removeprefix("v")):
                expected[SHOWN.get(package, package)] = (version, newest, registry, runtimes)
    assert behind == expected
    if matrix.parent == REPO:  # after `lock --upgrade`: none of the issue's is behind
        assert behind == {}
    else:  # the issue's pins: every one of its figures is behind
        assert sorted(behind) == sorted(SHOWN.get(p, p) for _, p in NEWEST)
    # nodejs.org's index is not served: each Node.js archive is one line, checked elsewhere
    host = base.removeprefix("http://")
    assert [ln for ln in lines if ln.startswith("inputs\tnot checked: node-22")] == [
        f"inputs\tnot checked: node-22: registry {host}: Node.js releases (index.json): not "
        "the answer expected (no list of releases); refused"
    ]
    if not behind:
        found.raise_for_failure()  # nothing newer: exit 0
        return
    with pytest.raises(OutdatedError) as raised:
        found.raise_for_failure()
    assert raised.value.return_code == 14


def test_a_pin_downloaded_from_central_is_read_through_a_mirror_and_keeps_its_url() -> None:
    mirror = Upstreams(maven="http://127.0.0.1:1/maven2", nodejs="http://127.0.0.1:1/dist")
    jar = (
        "https://repo1.maven.org/maven2/com/amazonaws/aws-lambda-java-serialization/1.1.5/"
        "aws-lambda-java-serialization-1.1.5.jar"
    )
    coordinates = MavenCoordinates.of(jar, maven_bases(mirror))
    assert coordinates is not None
    assert (coordinates.name, coordinates.url("1.4.1")) == (
        "com.amazonaws:aws-lambda-java-serialization",
        jar.replace("1.1.5", "1.4.1"),
    )
    archive = "https://nodejs.org/dist/v24.21.0/node-v24.21.0-linux-x64.tar.xz"
    assert nodejs_version(archive, nodejs_bases(mirror)) == "24.21.0"
    assert MavenCoordinates.of(jar, [mirror.maven]) is None  # the mirror's base alone
