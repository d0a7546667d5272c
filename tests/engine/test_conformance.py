"""Conformance checks: every image from runtimes.yaml passes them, and each check rejects a
deliberately broken image with a message that says what is wrong and where."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from cli_runner import lambda_images
from conftest import BuiltImages, Phase
from fake_secrets import fake_access_key_id, fake_secret_key, private_key_pem

from pipeline.conformance import run_checks
from pipeline.errors import ConformanceError, EngineError
from pipeline.matrix import ARCHES, Matrix, load_matrix
from pipeline.probes import probe_dir
from pipeline.records import Report
from pipeline.workdir import WorkDir

NAMESPACE = os.environ.get("LAMBDA_IMAGES_NAMESPACE", "") or "lambda-images"
MATRIX = load_matrix(Path(__file__).resolve().parents[2] / "runtimes.yaml")
# The rows that build here; Amazon Linux rows need their locked inputs and registry.
DEBIAN_TARGETS = [
    pytest.param(t.runtime.id, t.arch.name, marks=pytest.mark.cells(t.key), id=t.key)
    for t in MATRIX.targets([rt for rt in MATRIX.runtimes if rt.os.id in ("debian12", "debian13")])
]


# The deliberately broken images are made from these (the foreign-binary one from both arches).
ON_THE_PHASE_IMAGES = pytest.mark.cells("provided.debian12", "python3.11.debian12/x86_64")


# --- every pipeline-built image passes ---------------------------------------------------------


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize(("runtime", "arch"), DEBIAN_TARGETS)
def test_every_image_from_runtimes_yaml_passed_every_check(
    phase: Phase, runtime: str, arch: str
) -> None:
    """The build phase's `lambda-images build` checked each image once and wrote test.json;
    this reads that record (the checks themselves are not run again)."""
    report = phase.conformance(runtime, arch)
    assert report.ok, report.summary()
    assert [c.name for c in report.checks] == [
        "invocation",
        "read-only-rootfs",
        "readable-files",
        "entrypoint",
        "size",
        "architecture",
        "manifest",
        "no-credentials",
    ]
    assert report.image == phase.targets(runtime)[arch].image_tag


# --- deliberately broken images ------------------------------------------------------------------


BrokenImages = Callable[[str], str]


def _build(engine: Any, tag: str, dockerfile: str, files: dict[str, bytes], platform: str) -> None:
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in {"Dockerfile": dockerfile.encode(), **files}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    stream = engine.api.build(
        fileobj=context, custom_context=True, tag=tag, decode=True, platform=platform, rm=True
    )
    for chunk in stream:
        assert "error" not in chunk, chunk


def _layer_count(engine: Any, image: str) -> int:
    """Layers of an image: BuildKit adds an empty one for an existing WORKDIR, the classic
    builder none, so a layer's number depends on the engine that built the base."""
    return len(engine.images.get(image).attrs["RootFS"]["Layers"])


def _file_from_image(engine: Any, image: str, path: str) -> bytes:
    container = engine.containers.create(image)
    try:
        stream, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            assert member is not None
            f = tar.extractfile(member)
            assert f is not None
            return f.read()
    finally:
        container.remove()


def _load_without_architecture(engine: Any, source: str, tag: str, tmp: Path) -> None:
    """``docker load`` a copy of ``source`` whose config names no architecture."""
    import hashlib

    saved = tmp / "saved"
    saved.mkdir()
    with tarfile.open(fileobj=io.BytesIO(b"".join(engine.images.get(source).save()))) as tar:
        tar.extractall(saved, filter="tar")
    manifest = json.loads((saved / "manifest.json").read_text())
    config_file = saved / manifest[0]["Config"]
    config = json.loads(config_file.read_text())
    config.pop("architecture")
    data = json.dumps(config).encode()
    config_file.unlink()
    name = hashlib.sha256(data).hexdigest() + ".json"
    (saved / name).write_bytes(data)
    manifest[0].update(Config=name, RepoTags=[tag])
    (saved / "manifest.json").write_text(json.dumps(manifest))
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for path in sorted(saved.iterdir()):
            tar.add(path, arcname=path.name)
    engine.images.load(archive.getvalue())


@pytest.fixture(scope="session")
def broken(
    engine: Any, built: BuiltImages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokenImages]:
    """``broken(defect)`` builds a tiny image with one defect (once) and returns its tag.
    All of them are removed from the engine at the end of the session."""
    provided = built("provided.debian12")
    python = built("python3.11.debian12")
    made: dict[str, str] = {}
    keys = {"access": fake_access_key_id(), "secret": fake_secret_key()}

    def make(defect: str) -> str:
        if defect in made:
            return made[defect]
        tag = f"{NAMESPACE}/broken-{defect}:test"
        amd64 = provided["x86_64"].image_tag
        files: dict[str, bytes] = {}
        platform = "linux/amd64"
        if defect == "entrypoint-symlink":
            dockerfile = (
                f"FROM {amd64}\nRUN ln -s /lambda-entrypoint.sh /entrypoint\n"
                'ENTRYPOINT ["/entrypoint"]\n'
            )
        elif defect == "entrypoint-relative":
            dockerfile = f'FROM {amd64}\nWORKDIR /\nENTRYPOINT ["lambda-entrypoint.sh"]\n'
        elif defect == "unreadable-task-file":
            dockerfile = (
                f"FROM {amd64}\n"
                "RUN printf 'db=prod\\n' > /var/task/settings.ini \\\n"
                "    && chmod 0600 /var/task/settings.ini\n"
            )
        elif defect == "writes-outside-tmp":
            # A runtime that keeps a cache in /var/tmp: fine in docker, refused on Lambda.
            files["bootstrap.sh"] = (
                b"#!/bin/sh\necho warm > /var/tmp/runtime-cache 2>/dev/null\n"
                b"exec /var/task/bootstrap\n"
            )
            dockerfile = f"FROM {amd64}\nCOPY bootstrap.sh /var/runtime/bootstrap\n"
        elif defect == "aws-credentials":
            # Added in one layer and deleted in the next: still in the image.
            dockerfile = (
                f"FROM {amd64}\n"
                "RUN mkdir -p /root/.aws && printf '[default]\\naws_access_key_id = %s\\n"
                "aws_secret_access_key = %s\\n' "
                f"'{keys['access']}' '{keys['secret']}' > /root/.aws/credentials\n"
                "RUN rm -rf /root/.aws\n"
                f"ENV AWS_SECRET_ACCESS_KEY={fake_secret_key()}\n"
            )
        elif defect == "private-key":
            files["key.pem"] = private_key_pem()
            dockerfile = f"FROM {amd64}\nCOPY key.pem /opt/deploy/key.pem\n"
        elif defect == "foreign-binary":
            # Labelled arm64 (the arm64 image as base) but carrying an amd64 executable.
            files["true"] = _file_from_image(engine, amd64, "/usr/bin/true")
            dockerfile = f"FROM {provided['arm64'].image_tag}\nCOPY true /usr/local/bin/true\n"
            platform = "linux/arm64"
        elif defect == "no-runtime-client":
            dockerfile = (
                f"FROM {python['x86_64'].image_tag}\nRUN rm -rf /var/runtime/awslambdaric\n"
            )
        elif defect == "no-architecture":
            _load_without_architecture(engine, amd64, tag, tmp_path_factory.mktemp("load"))
            made[defect] = tag
            return tag
        else:
            raise AssertionError(f"no such defect {defect}")
        _build(engine, tag, dockerfile, files, platform)
        made[defect] = tag
        return tag

    yield make
    for tag in made.values():
        with contextlib.suppress(docker.errors.APIError):
            engine.images.remove(tag, force=True)


def checked(
    engine: Any, image: str, arch: str = "x86_64", runtime: str = "provided.debian12", **kw: Any
) -> Report:
    return run_checks(engine, image, ARCHES[arch], probe_dir(MATRIX.runtime(runtime)), **kw)


def failed(report: Report) -> dict[str, str]:
    return {c.name: c.message for c in report.failed}


@pytest.mark.engine
@pytest.mark.slow
@ON_THE_PHASE_IMAGES
def test_entrypoint_that_is_a_symlink_is_rejected(engine: Any, broken: BrokenImages) -> None:
    report = checked(engine, broken("entrypoint-symlink"))
    assert failed(report) == {
        "entrypoint": "ENTRYPOINT /entrypoint is a symlink to /lambda-entrypoint.sh; "
        "point ENTRYPOINT at the file"
    }


@pytest.mark.engine
@pytest.mark.slow
@ON_THE_PHASE_IMAGES
def test_relative_entrypoint_is_rejected(engine: Any, broken: BrokenImages) -> None:
    report = checked(engine, broken("entrypoint-relative"))
    assert "entrypoint" in failed(report)
    assert "'lambda-entrypoint.sh' is not an absolute path" in failed(report)["entrypoint"]
    # The engine cannot start it either; the invocation says so as Lambda would.
    assert "Runtime.InvalidEntrypoint" in failed(report)["invocation"]
    assert "lambda-entrypoint.sh" in failed(report)["invocation"]


@pytest.mark.engine
@pytest.mark.slow
@ON_THE_PHASE_IMAGES
def test_task_file_only_root_can_read_is_rejected(engine: Any, broken: BrokenImages) -> None:
    report = checked(engine, broken("unreadable-task-file"))
    assert list(failed(report)) == ["readable-files"]
    assert "/var/task/settings.ini (0600, owner 0:0)" in failed(report)["readable-files"]


@pytest.mark.engine
@pytest.mark.slow
@ON_THE_PHASE_IMAGES
def test_runtime_writing_outside_tmp_is_rejected(engine: Any, broken: BrokenImages) -> None:
    report = checked(engine, broken("writes-outside-tmp"))
    assert list(failed(report)) == ["read-only-rootfs"]
    message = failed(report)["read-only-rootfs"]
    assert "writes outside /tmp" in message
    assert "/var/tmp/runtime-cache" in message


@pytest.mark.engine
@pytest.mark.slow
@ON_THE_PHASE_IMAGES
def test_baked_aws_keys_are_found_even_when_deleted_later(
    engine: Any, broken: BrokenImages, tmp_path: Path
) -> None:
    image = broken("aws-credentials")
    report = checked(engine, image)
    assert list(failed(report)) == ["no-credentials"]
    message = failed(report)["no-credentials"]
    layer = _layer_count(engine, image) - 1  # the first of the two RUN layers on top
    assert f"AWS access key id in /root/.aws/credentials (layer {layer})" in message
    assert f"AWS secret access key in /root/.aws/credentials (layer {layer})" in message
    assert "AWS_SECRET_ACCESS_KEY in the image's ENV" in message
    # The report names where the keys are, never the keys themselves.
    config_env = engine.images.get(image).attrs["Config"]["Env"]
    secret_env = next(e.split("=", 1)[1] for e in config_env if e.startswith("AWS_SECRET"))
    record = report.write(WorkDir(tmp_path).cell("keys", "x86_64")).read_text()
    for text in (message, record):
        assert "AKIA" not in text
        assert secret_env not in text


@pytest.mark.engine
@pytest.mark.slow
@ON_THE_PHASE_IMAGES
def test_baked_private_key_is_rejected(engine: Any, broken: BrokenImages) -> None:
    image = broken("private-key")
    report = checked(engine, image)
    assert list(failed(report)) == ["no-credentials"]
    layer = _layer_count(engine, image)  # the COPY on top
    assert f"private key in /opt/deploy/key.pem (layer {layer})" in failed(report)["no-credentials"]


@pytest.mark.engine
@pytest.mark.slow
@ON_THE_PHASE_IMAGES
def test_amd64_image_offered_as_arm64_is_rejected(engine: Any, built: BuiltImages) -> None:
    amd64 = built("provided.debian12")["x86_64"].image_tag
    report = checked(engine, amd64, arch="arm64")
    assert failed(report) == {"architecture": "the image is amd64, the target is arm64 (arm64)"}


@pytest.mark.engine
@pytest.mark.slow
@ON_THE_PHASE_IMAGES
def test_arm64_image_carrying_amd64_binaries_is_rejected(engine: Any, broken: BrokenImages) -> None:
    report = checked(engine, broken("foreign-binary"), arch="arm64")
    assert list(failed(report)) == ["architecture"]
    assert "/usr/local/bin/true (amd64)" in failed(report)["architecture"]


@pytest.mark.engine
@pytest.mark.slow
@ON_THE_PHASE_IMAGES
def test_image_whose_config_names_no_platform_is_rejected(
    engine: Any, broken: BrokenImages
) -> None:
    report = checked(engine, broken("no-architecture"))
    assert "config names no architecture" in failed(report)["manifest"]
    assert (
        failed(report)["architecture"]
        == "the image is of no architecture, the target is x86_64 (amd64)"
    )


@pytest.mark.engine
@pytest.mark.slow
@ON_THE_PHASE_IMAGES
def test_image_over_the_size_limit_is_rejected(engine: Any, built: BuiltImages) -> None:
    # Building a real 10 GiB image costs minutes and 12 GB of disk: lower the limit instead.
    image = built("provided.debian12")["x86_64"].image_tag
    report = checked(engine, image, max_size=100 * 1024 * 1024)
    assert list(failed(report)) == ["size"]
    assert "over Lambda's 100.0 MiB limit" in failed(report)["size"]


@pytest.mark.engine
@pytest.mark.slow
@ON_THE_PHASE_IMAGES
def test_image_whose_runtime_cannot_answer_fails_the_invocation(
    engine: Any, broken: BrokenImages
) -> None:
    report = checked(engine, broken("no-runtime-client"), runtime="python3.11.debian12")
    assert "invocation" in failed(report)
    message = failed(report)["invocation"]
    assert "Runtime.ExitError" in message
    # The bootstrap imports the client (`No module named 'awslambdaric'`); `python -m` said it
    # without quotes.
    assert re.search(r"No module named '?awslambdaric", message), message


@pytest.mark.engine
@pytest.mark.slow
@ON_THE_PHASE_IMAGES
def test_failing_image_stops_the_pipeline_and_the_cli_says_why(
    engine: Any,
    broken: BrokenImages,
    matrix: Matrix,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conftest import make_run

    from pipeline.orchestrate import test_cell

    work = tmp_path / "work"  # its own: the failed record must not reach other tests' cells

    # Put the broken image where the pipeline expects provided.debian12/x86_64 in a namespace
    # of its own, so that the real image stays untouched.
    namespace = f"{NAMESPACE}-broken"
    own = dataclasses.replace(matrix, namespace=namespace)
    target = own.targets([own.runtime("provided.debian12")], ["x86_64"])[0]
    run = make_run(own, work, engine)
    engine.images.get(broken("entrypoint-symlink")).tag(f"{namespace}/provided.debian12", "x86_64")
    monkeypatch.setenv("LAMBDA_IMAGES_NAMESPACE", namespace)
    try:
        with pytest.raises(ConformanceError, match="not snapshotting or publishing it") as exc:
            test_cell(run, target)
        assert "entrypoint: ENTRYPOINT /entrypoint is a symlink" in str(exc.value)
        record = json.loads(run.cell(target).record("test.json").read_text())
        assert record["ok"] is False

        result = lambda_images(
            "--work", str(work), "test", "provided.debian12", "--arch", "x86_64", "--json",
            timeout=600,
        )  # fmt: skip
        assert result.returncode == 10
        (report,) = json.loads(result.stdout)
        assert [c["name"] for c in report["checks"] if not c["ok"]] == ["entrypoint"]
        assert "conformance checks failed for provided.debian12/x86_64" in result.stderr
    finally:
        engine.images.remove(f"{namespace}/provided.debian12:x86_64")


@pytest.mark.engine
def test_missing_image_is_an_engine_error(engine: Any) -> None:
    with pytest.raises(EngineError, match="no image 'nobody/nothing:here'"):
        checked(engine, "nobody/nothing:here")
