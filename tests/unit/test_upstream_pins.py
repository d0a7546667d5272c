"""`outdated` reads each kind of registry a pin comes from (PyPI's JSON API, the npm registry,
Maven metadata, the Go module proxy's @v/list) and names each stale pin `pinned → newest`;
`lock --upgrade` moves the pins, locks them and checks each new hash against the digest the
registry publishes, refusing a wrong one with nothing written. The registries are one stand-in
server on 127.0.0.1; what only pip, npm and the go command do (resolve a requirement, build a
module) is done by stand-ins that fetch the same bytes from it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import StandIn

from pipeline import orchestrate as do
from pipeline import show
from pipeline.errors import InputError, OutdatedError
from pipeline.gobuild import Built
from pipeline.inputs import download
from pipeline.lock import Lock, LockedFile, LockedModule, LockedPackage
from pipeline.matrix import Input, Runtime
from pipeline.settings import Settings

WHEEL = "awslambdaric-4.2.2-py3-none-any.whl"
OLD_WHEEL = "awslambdaric-3.1.1-py3-none-any.whl"
MAVEN_PATH = "/maven2/com/amazonaws/aws-lambda-java-runtime-interface-client"
TOOL = "example.com/tool"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def h1(module_zip: bytes) -> str:
    """A module tree's go.sum hash, as the go command computes it (dirhash.Hash1)."""
    with zipfile.ZipFile(io.BytesIO(module_zip)) as archive:
        names = sorted(archive.namelist())
        lines = "".join(f"{sha256(archive.read(n))}  {n}\n" for n in names)
    return "h1:" + base64.b64encode(hashlib.sha256(lines.encode()).digest()).decode()


def module_zip(version: str, text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{TOOL}@{version}/go.mod", f"module {TOOL}\n")
        archive.writestr(f"{TOOL}@{version}/main.go", text)
    return buffer.getvalue()


class Registries:
    """What each registry serves: releases (with pre-releases, a yanked or deprecated one and
    one above a bound, which none of the checks may offer) and the artifacts with digests."""

    def __init__(self, server: StandIn) -> None:
        self.server = server
        self.wheel = b"awslambdaric 4.2.2\n"
        self.tarball = b"aws-lambda-ric 3.4.0 tarball\n"
        self.jar = b"aws-lambda-java-runtime-interface-client 2.10.1\n"
        self.zip = module_zip("v1.3.0", "package main\n")

    def publish(self, *, served: dict[str, bytes] | None = None) -> None:
        """Serve the metadata for the genuine artifacts, and ``served`` (or the genuine
        artifacts) at the artifacts' URLs."""
        base = self.server.url
        files = {
            f"/files/{WHEEL}": self.wheel,
            "/npm/aws-lambda-ric/-/aws-lambda-ric-3.4.0.tgz": self.tarball,
            f"{MAVEN_PATH}/2.10.1/aws-lambda-java-runtime-interface-client-2.10.1.jar": self.jar,
            f"/go/{TOOL}/@v/v1.3.0.zip": self.zip,
        }
        files |= served or {}
        releases = {
            "3.1.1": [{"filename": OLD_WHEEL, "digests": {"sha256": "0" * 64}}],
            "4.1.0": [{"filename": "a.whl", "digests": {"sha256": "1" * 64}, "yanked": True}],
            "4.2.2": [{"filename": WHEEL, "digests": {"sha256": sha256(self.wheel)},
                       "url": f"{base}/files/{WHEEL}"}],
            "4.3.0b1": [{"filename": "b.whl", "digests": {"sha256": "2" * 64}}],
            "5.0.0": [],  # no files: nothing to install
        }  # fmt: skip
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(self.tarball).digest()).decode()
        npm = {
            "name": "aws-lambda-ric",
            "versions": {
                "3.3.0": {"dist": {}},
                "3.4.0": {"dist": {"integrity": integrity}},
                "3.4.1": {"dist": {}, "deprecated": "broken, use 3.4.0"},
                "3.5.0-beta.1": {"dist": {}},
                "4.0.2": {"dist": {}},  # above the bound runtimes.yaml gives
            },
        }
        listed = ("2.6.0", "2.9.0", "2.10.0-RC1", "2.10.1", "2.11.0-SNAPSHOT")
        metadata = "".join(f"<version>{v}</version>" for v in listed)
        self.server.routes = {
            "/pypi/awslambdaric/json": json.dumps({"info": {}, "releases": releases}).encode(),
            "/npm/aws-lambda-ric": json.dumps(npm).encode(),
            f"{MAVEN_PATH}/maven-metadata.xml": (
                f"<metadata><versioning><versions>{metadata}</versions></versioning></metadata>"
            ).encode(),
            f"{MAVEN_PATH}/2.10.1/aws-lambda-java-runtime-interface-client-2.10.1.jar.sha1": (
                hashlib.sha1(self.jar).hexdigest().encode()
            ),
            f"/go/{TOOL}/@v/list": b"v1.2.0\nv1.3.0\nv1.4.0-rc.1\n",
            f"/go/sumdb/sum.golang.org/lookup/{TOOL}@v1.3.0": (
                f"1234\n{TOOL} v1.3.0 {h1(self.zip)}\n{TOOL} v1.3.0/go.mod h1:{'A' * 43}=\n\n"
            ).encode(),
            **files,
        }


MATRIX = """\
# A matrix of one runtime per kind of pin; comments and layout must survive an upgrade.
operating_systems:
  debian12:
    name: Debian 12
    architectures: [x86_64, arm64]
    base:
      rootfs: {{suite: bookworm, mirror: "http://deb.debian.org/debian"}}
    packages: apt
families:
  python: {{name: Python, template: python, sdk: AWS SDK for Python, sdk_packages: [awslambdaric]}}
  nodejs: {{name: Node.js, template: nodejs, sdk: SDK for JavaScript}}
  java:
    name: Java
    template: java
    destinations: {{language: /var/lang, ric: /var/runtime/lib}}
  provided: {{name: Custom Runtime, template: provided}}
inputs:
  tool:
    version: v1.2.0
    go: {{module: {tool}, package: ./cmd/tool, toolchain: go1.26.8}}
  java-ric:
    version: 2.6.0   # the Java runtime interface client
    url: "{base}{maven}/2.6.0/aws-lambda-java-runtime-interface-client-2.6.0.jar"
upgrade_below:
  aws-lambda-ric: "4"   # 4.x needs a newer Node.js than these rows have
runtimes:
  - id: python3.11.debian12
    name: Python 3.11
    family: python
    version: "3.11"
    os: debian12
    architectures: [x86_64]
    install:
      apt: [python3]
      pip: [awslambdaric==3.1.1]   # the runtime interface client
  - id: nodejs20.x.debian13
    name: Node.js 20
    family: nodejs
    version: "20"
    os: debian12
    architectures: [x86_64]
    install:
      npm: ["aws-lambda-ric@3.3.0"]
  - id: java17.debian12
    name: Java 17
    family: java
    version: "17"
    os: debian12
    architectures: [x86_64, arm64]
    inputs: {{ric: java-ric}}
  - id: provided.debian12
    name: Custom Runtime
    family: provided
    version: debian12
    os: debian12
    architectures: [x86_64]
    inputs: {{emulator: tool}}
"""


@pytest.fixture
def registries() -> Iterator[Registries]:
    with StandIn() as server:
        found = Registries(server)
        found.publish()
        yield found


@pytest.fixture
def matrix(tmp_path: Path, registries: Registries) -> Path:
    path = tmp_path / "runtimes.yaml"
    path.write_text(MATRIX.format(base=registries.server.url, maven=MAVEN_PATH, tool=TOOL))
    lock = Lock(path=tmp_path / "runtimes.lock.json")
    lock.pip["python3.11.debian12"] = {"x86_64": [LockedFile(filename=OLD_WHEEL, sha256="3" * 64)]}
    old_tgz = f"{registries.server.url}/npm/aws-lambda-ric/-/aws-lambda-ric-3.3.0.tgz"
    path_ = "node_modules/aws-lambda-ric"
    lock.npm["nodejs20.x.debian13"] = [LockedPackage(path=path_, url=old_tgz, sha256="4" * 64)]
    lock.inputs["java-ric"] = {"any": "5" * 64}
    lock.inputs["tool"] = {"x86_64": "6" * 64}
    lock.go["tool"] = LockedModule(module=TOOL, version="v1.2.0", sum="h1:" + "B" * 43 + "=")
    lock.save()
    return path


def settings(matrix: Path, server: StandIn) -> Settings:
    base = server.url
    return Settings.from_environ({
        "LAMBDA_IMAGES_MATRIX": str(matrix),
        "LAMBDA_IMAGES_CACHE": str(matrix.parent / "cache"),
        "LAMBDA_IMAGES_PYPI_URL": f"{base}/pypi",
        "npm_config_registry": f"{base}/npm/",
        "LAMBDA_IMAGES_MAVEN_URL": f"{base}/maven2",
        "GOPROXY": f"{base}/go,direct",
        "PATH": "/usr/bin:/bin",
    })  # fmt: skip


@pytest.fixture
def resolvers(monkeypatch: pytest.MonkeyPatch, registries: Registries) -> None:
    """pip, npm and the go command, as `lock` runs them, stood in for: each fetches the
    artifact the upgraded pin names from the stand-in and hashes what arrived."""
    base = registries.server.url

    def lock_pip(runtime: Runtime, arch: str) -> list[LockedFile]:
        (spec,) = runtime.install.pip
        name, version = spec.split("==")
        url = f"{base}/files/{name}-{version}-py3-none-any.whl"
        cached = download(url, None, runtime.id, registries.server.root / "cache")
        return [LockedFile(filename=url.rsplit("/", 1)[-1], sha256=cached.name)]

    def lock_npm(runtime: Runtime, cache: Path) -> list[LockedPackage]:
        (spec,) = runtime.install.npm
        name, version = spec.split("@")
        url = f"{base}/npm/{name}/-/{name}-{version}.tgz"
        cached = download(url, None, runtime.id, cache)
        return [LockedPackage(path=f"node_modules/{name}", url=url, sha256=cached.name)]

    def build_input(item: Input, arch: str, dest: Path, **_: Any) -> Built:
        assert item.build is not None
        url = f"{base}/go/{item.build.module}/@v/{item.version}.zip"
        source = download(url, None, item.name, registries.server.root / "cache").read_bytes()
        dest.write_bytes(b"a binary built from " + source)
        return Built(path=dest, sha256=sha256(dest.read_bytes()), module_sum=h1(source))

    monkeypatch.setattr("pipeline.orchestrate.freshness.lock_pip", lock_pip)
    monkeypatch.setattr("pipeline.orchestrate.freshness.lock_npm", lock_npm)
    monkeypatch.setattr("pipeline.inputs.build_input", build_input)


def run_of(matrix: Path, server: StandIn) -> do.Run:
    return do.Run.open(settings(matrix, server))


def test_outdated_reads_each_registry_and_names_each_stale_pin(
    matrix: Path, registries: Registries, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_of(matrix, registries.server)
    cells = do.Cells(runtimes=tuple(run.matrix.runtimes))
    found = do.outdated(run, do.OutdatedRequest(cells=cells, only="inputs"))
    show.outdated(found)
    assert capsys.readouterr().out.splitlines() == [
        "inputs\toutdated: 4 of 4 pinned input(s) checked against their registry",
        "  awslambdaric\t3.1.1 → 4.2.2\t(PyPI: python3.11.debian12)",
        "  aws-lambda-ric\t3.3.0 → 3.4.0\t(npm, below 4: nodejs20.x.debian13)",
        "  java-ric\t2.6.0 → 2.10.1\t(Maven Central: java17.debian12)",
        "  tool\tv1.2.0 → v1.3.0\t(Go module proxy: provided.debian12)",
    ]
    assert found.as_json()["inputs"]["checked"][1] == {
        "input": "aws-lambda-ric", "kind": "npm", "package": "aws-lambda-ric", "pinned": "3.3.0",
        "newest": "3.4.0", "state": "outdated", "below": "4",
        "runtimes": ["nodejs20.x.debian13"], "note": "",
    }  # fmt: skip
    assert found.images is None  # --only inputs: no engine asked
    with pytest.raises(OutdatedError) as raised:
        found.raise_for_failure()
    assert raised.value.return_code == 14
    assert str(raised.value) == (
        "newer releases of awslambdaric, aws-lambda-ric, java-ric, tool; move the pins with "
        "`lambda-images lock --upgrade`"
    )


def test_an_unreachable_registry_is_one_line_and_leaves_its_pins_unchecked(
    matrix: Path, registries: Registries, capsys: pytest.CaptureFixture[str]
) -> None:
    registries.server.routes = {}
    registries.server.status = 503  # every answer: try again later
    run = run_of(matrix, registries.server)
    cells = do.Cells(runtimes=tuple(run.matrix.runtimes))
    found = do.outdated(run, do.OutdatedRequest(cells=cells, only="inputs"))
    show.outdated(found)
    host = registries.server.url.removeprefix("http://")
    assert capsys.readouterr().out.splitlines() == [
        "inputs\tcurrent: 0 pinned input(s) checked against their registry",
        f"inputs\tnot checked: {host} did not answer (3 tries): awslambdaric, aws-lambda-ric, "
        "java-ric, tool; checked where it answers",
    ]
    found.raise_for_failure()  # nothing known to be behind: no error


def test_lock_upgrade_moves_each_pin_and_locks_the_new_hashes(
    matrix: Path, registries: Registries, resolvers: None, tmp_path: Path
) -> None:
    before = matrix.read_text()
    run = run_of(matrix, registries.server)
    body = tmp_path / "body.md"
    request = do.UpgradeRequest(runtimes=tuple(run.matrix.runtimes), markdown=body)
    report = do.upgrade_pins(run, request)
    assert [(m.name, m.old, m.new) for m in report.moved] == [
        ("awslambdaric", "3.1.1", "4.2.2"),
        ("aws-lambda-ric", "3.3.0", "3.4.0"),
        ("java-ric", "2.6.0", "2.10.1"),
        ("tool", "v1.2.0", "v1.3.0"),
    ]
    # runtimes.yaml: the pins moved where they stand; comments and layout as they were.
    expected = (
        before.replace("awslambdaric==3.1.1", "awslambdaric==4.2.2")
        .replace('"aws-lambda-ric@3.3.0"', '"aws-lambda-ric@3.4.0"')
        .replace("version: 2.6.0", "version: 2.10.1")
        .replace("/2.6.0/aws-lambda-java-runtime-interface-client-2.6.0.jar",
                 "/2.10.1/aws-lambda-java-runtime-interface-client-2.10.1.jar")
        .replace("version: v1.2.0", "version: v1.3.0")
    )  # fmt: skip
    assert matrix.read_text() == expected
    lock = Lock.load(matrix.with_name("runtimes.lock.json"))
    assert lock.pip["python3.11.debian12"]["x86_64"] == [
        LockedFile(filename=WHEEL, sha256=sha256(registries.wheel))
    ]
    assert [p.sha256 for p in lock.npm["nodejs20.x.debian13"]] == [sha256(registries.tarball)]
    assert lock.inputs["java-ric"] == {"any": sha256(registries.jar)}
    assert lock.go["tool"] == LockedModule(module=TOOL, version="v1.3.0", sum=h1(registries.zip))
    assert lock.inputs["tool"] == {"x86_64": sha256(b"a binary built from " + registries.zip)}
    assert body.read_text().splitlines()[2:] == [
        "- `awslambdaric` (PyPI): `3.1.1` → `4.2.2` — `python3.11.debian12`",
        "- `aws-lambda-ric` (npm): `3.3.0` → `3.4.0` — `nodejs20.x.debian13`",
        "- `java-ric` (Maven Central): `2.6.0` → `2.10.1` — `java17.debian12`",
        "- `tool` (Go module proxy): `v1.2.0` → `v1.3.0` — `provided.debian12`",
    ]


TAMPERED: dict[str, tuple[str, Callable[[Registries], dict[str, bytes]], str]] = {
    "pypi": ("awslambdaric", lambda r: {f"/files/{WHEEL}": b"not the wheel PyPI lists\n"},
             f"awslambdaric 4.2.2: {WHEEL} is sha256 "),
    "npm": ("aws-lambda-ric",
            lambda r: {"/npm/aws-lambda-ric/-/aws-lambda-ric-3.4.0.tgz": b"another tarball\n"},
            "aws-lambda-ric 3.4.0: aws-lambda-ric-3.4.0.tgz is integrity sha512-"),
    "maven": ("java-ric",
              lambda r: {f"{MAVEN_PATH}/2.10.1/aws-lambda-java-runtime-interface-client-2.10.1"
                         ".jar": b"another jar\n"},
              "java-ric 2.10.1: aws-lambda-java-runtime-interface-client-2.10.1.jar is SHA-1 "),
    "go": ("tool", lambda r: {f"/go/{TOOL}/@v/v1.3.0.zip": module_zip("v1.3.0", "evil\n")},
           "tool v1.3.0: its module tree is h1:"),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(TAMPERED))
def test_lock_upgrade_refuses_an_artifact_its_registry_does_not_vouch_for(
    kind: str, matrix: Path, registries: Registries, resolvers: None
) -> None:
    name, tampered, message = TAMPERED[kind]
    registries.publish(served=tampered(registries))
    lock_path = matrix.with_name("runtimes.lock.json")
    before = (matrix.read_text(), lock_path.read_text())
    run = run_of(matrix, registries.server)
    request = do.UpgradeRequest(runtimes=tuple(run.matrix.runtimes), names=(name,))
    with pytest.raises(InputError) as raised:
        do.upgrade_pins(run, request)
    assert raised.value.return_code == 3
    assert str(raised.value).startswith(message), str(raised.value)
    assert str(raised.value).endswith("; refused: nothing was written")
    assert (matrix.read_text(), lock_path.read_text()) == before


def test_a_bound_keeps_a_pin_below_a_known_breaking_major(
    matrix: Path, registries: Registries
) -> None:
    """runtimes.yaml's `upgrade_below` holds aws-lambda-ric below 4 (4.0.2 is listed): the
    newest it may move to is 3.4.0; without the bound it would be 4.0.2."""
    run = run_of(matrix, registries.server)
    runtime = run.matrix.runtime("nodejs20.x.debian13")
    found = do.outdated_inputs(run, [runtime])
    assert [(i.name, i.newest, i.below) for i in found.inputs] == [("aws-lambda-ric", "3.4.0", "4")]
    text = matrix.read_text().replace('  aws-lambda-ric: "4"', "  other-package: '1'")
    matrix.write_text(text)
    run = run_of(matrix, registries.server)
    found = do.outdated_inputs(run, [run.matrix.runtime("nodejs20.x.debian13")])
    assert [(i.name, i.newest, i.below) for i in found.inputs] == [
        ("aws-lambda-ric", "4.0.2", None)
    ]
