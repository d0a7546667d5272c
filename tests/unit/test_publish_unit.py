"""Publish logic without a registry: tags, `latest`, documents, gzip layers, credentials."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from publish_helpers import make_snapshot

from pipeline.errors import PublishError, RegistryError
from pipeline.matrix import Matrix
from pipeline.oci.credentials import (
    Credentials,
    docker_config_credentials,
    ecr_public_credentials,
    resolve_credentials,
)
from pipeline.oci.registry import RegistryRef
from pipeline.orchestrate import Run
from pipeline.publish.documents import gzip_layer, prepare_images, read_cells
from pipeline.publish.tags import dated_stamp, runtime_tags
from pipeline.settings import Settings
from pipeline.workdir import WorkDir

REPO = Path(__file__).resolve().parents[2]


def test_dated_tag_is_the_release_hour_in_utc() -> None:
    assert dated_stamp(1723208400) == "2024.08.09.13"
    assert dated_stamp(1723208400 + 3599) == "2024.08.09.13"
    assert dated_stamp(1723208400 + 3600) == "2024.08.09.14"


def test_tags_follow_aws_naming_dated_ones_first(matrix: Matrix) -> None:
    rt = matrix.runtime("python3.11.debian12")
    tags = runtime_tags(rt, 1723208400, latest=True)
    assert list(tags.items()) == [
        ("3.11-debian12.2024.08.09.13-x86_64", "x86_64"),
        ("3.11-debian12.2024.08.09.13-arm64", "arm64"),
        ("3.11-debian12.2024.08.09.13", None),
        ("3.11-debian12-x86_64", "x86_64"),
        ("3.11-debian12-arm64", "arm64"),
        ("3.11-debian12", None),
        ("latest-x86_64", "x86_64"),
        ("latest-arm64", "arm64"),
        ("latest", None),
    ]
    assert not {"latest", "latest-x86_64"} & set(runtime_tags(rt, 0, latest=False))


def test_aws_tag_names(matrix: Matrix) -> None:
    tags = {rt.id: rt.tag for rt in matrix.runtimes}
    assert tags["provided"] == "alami"
    assert tags["provided.al2"] == "al2"
    assert tags["dotnetcore3.1"] == "core3.1"
    assert tags["dotnetcore2.1"] == "core2.1"
    assert tags["go1.x"] == "1"
    assert tags["java8.al2"] == "8.al2"
    assert tags["nodejs24.x"] == "24"
    amazon_linux_one = matrix.runtime("provided")
    assert list(runtime_tags(amazon_linux_one, 1723208400, latest=False)) == [
        "alami.2024.08.09.13-x86_64",
        "alami.2024.08.09.13",
        "alami-x86_64",
        "alami",
    ]


def test_latest_is_what_the_matrix_declares_per_family(matrix: Matrix) -> None:
    declared = {fam: matrix.latest(f) for fam, f in matrix.families.items()}
    assert {fam: rt.id if rt else None for fam, rt in declared.items()} == {
        "nodejs": "nodejs24.x",
        "python": "python3.14",
        "ruby": "ruby3.4",
        "java": "java25",
        "go": "go1.x",
        "dotnet": "dotnet10",
        "provided": "provided.al2023",
    }
    # Declared, not inferred: the text order that once gave provided.debian12 plays no part.
    assert all(rt is not None and rt.family.id == fam for fam, rt in declared.items())


def test_gzip_layers_are_reproducible_and_keep_the_diff_id(tmp_path: Path) -> None:
    snap = make_snapshot(tmp_path, "provided.debian12", "x86_64", "A")
    first = gzip_layer(WorkDir(tmp_path), snap, 1)
    first_bytes = first.path.read_bytes()
    for leftover in WorkDir(tmp_path).registry_blobs.iterdir():
        leftover.unlink()
    again = gzip_layer(WorkDir(tmp_path), snap, 1)
    assert again.digest == first.digest
    assert again.path.read_bytes() == first_bytes
    assert first.digest == "sha256:" + hashlib.sha256(first_bytes).hexdigest()
    plain = gzip.decompress(first_bytes)
    assert "sha256:" + hashlib.sha256(plain).hexdigest() == snap.layers[1].diff_id


def test_damaged_layer_is_refused(tmp_path: Path) -> None:
    snap = make_snapshot(tmp_path, "provided.debian12", "x86_64", "A")
    path = tmp_path / "provided.debian12" / "x86_64" / "layers" / snap.layers[0].file
    path.write_bytes(path.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(PublishError, match="run the snapshot stage again"):
        gzip_layer(WorkDir(tmp_path), snap, 0)


def test_config_diff_ids_and_index_platforms(tmp_path: Path) -> None:
    snaps = [make_snapshot(tmp_path, "provided.debian12", a, "A") for a in ("x86_64", "arm64")]
    images, index = prepare_images(WorkDir(tmp_path), snaps, 1704067200)
    for snap, image in zip(snaps, images, strict=True):
        config = json.loads(image.config)
        assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in snap.layers]
        assert config["architecture"] == snap.docker_arch
        assert config["created"] == "2024-01-01T00:00:00Z"
        assert config["config"]["Labels"]["org.opencontainers.image.source"]
    listed = json.loads(index.body)["manifests"]
    assert [m["platform"]["architecture"] for m in listed] == ["amd64", "arm64"]
    assert [m["digest"] for m in listed] == [i.manifest.digest for i in images]


def test_a_runtime_is_ready_only_when_every_arch_is(tmp_path: Path, matrix: Matrix) -> None:
    rt = matrix.runtime("provided.debian12")
    make_snapshot(tmp_path, rt.id, "x86_64", "A")
    with pytest.raises(PublishError, match=r"provided.debian12/arm64 has no snapshot"):
        read_cells(rt, WorkDir(tmp_path))
    make_snapshot(tmp_path, rt.id, "arm64", "A")
    assert [s.arch for s in read_cells(rt, WorkDir(tmp_path))] == ["x86_64", "arm64"]
    (tmp_path / rt.id / "arm64" / "test.json").write_text('{"ok": false}')
    with pytest.raises(PublishError, match="did not pass its tests"):
        read_cells(rt, WorkDir(tmp_path))


def test_registry_reference_parsing() -> None:
    local = RegistryRef.parse("127.0.0.1:5000/lambda")
    assert (local.host, local.namespace, local.scheme) == ("127.0.0.1:5000", "lambda", "http")
    ecr = RegistryRef.parse("public.ecr.aws/lambda")
    assert (ecr.scheme, ecr.repository("python")) == ("https", "lambda/python")
    with pytest.raises(RegistryError, match="REGISTRY/NAMESPACE"):
        RegistryRef.parse("public.ecr.aws")
    with pytest.raises(RegistryError, match="lower-case"):
        RegistryRef.parse("127.0.0.1:5000/Lambda")


def test_credentials_never_show_the_password() -> None:
    creds = Credentials(username="AWS", password="hunter2-secret", source="x")
    assert "hunter2" not in repr(creds)


def test_docker_config_credentials(tmp_path: Path) -> None:
    auth = base64.b64encode(b"me:pa55:word").decode()
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"reg.example:5000": {"auth": auth}}})
    )
    found = docker_config_credentials("reg.example:5000", tmp_path)
    assert found is not None
    assert (found.username, found.password) == ("me", "pa55:word")
    assert docker_config_credentials("other.example", tmp_path) is None


def test_each_registry_gets_only_the_credentials_given_for_its_host(tmp_path: Path) -> None:
    """The environment's pair is --registry's; a mirror on another host gets the Docker
    config's entry for its own host, or nothing (never the primary's password)."""
    auth = base64.b64encode(b"mirror-user:mirror-pw").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"mirror.example": {"auth": auth}}}))
    settings = Settings.from_environ(
        {
            "LAMBDA_IMAGES_REGISTRY_USER": "primary-user",
            "LAMBDA_IMAGES_REGISTRY_PASSWORD": "primary-pw",
            "DOCKER_CONFIG": str(tmp_path),
            "LAMBDA_IMAGES_MATRIX": str(REPO / "runtimes.yaml"),
        }
    )
    primary = RegistryRef.parse("primary.example/lambda")
    run = Run.open(settings)

    def seen(ref: str, mirror_of: RegistryRef | None = None) -> tuple[str, str] | None:
        client = run.registry(RegistryRef.parse(ref), mirror_of=mirror_of)
        creds = client.credentials
        return None if creds is None else (creds.username, creds.password)

    assert seen("primary.example/lambda") == ("primary-user", "primary-pw")
    assert seen("mirror.example/copy", mirror_of=primary) == ("mirror-user", "mirror-pw")
    assert seen("elsewhere.example/copy", mirror_of=primary) is None
    assert seen("PRIMARY.example/copy", mirror_of=primary) == ("primary-user", "primary-pw")
    assert seen("primary.example:5000/copy", mirror_of=primary) is None  # another origin
    # A mirror named public.ecr.aws would get ECR Public's token; no other host ever asks boto3.
    client = _ecr_client()
    with Stubber(client):  # no response queued: a call would fail the test
        assert (
            resolve_credentials(
                "elsewhere.example", settings, environment_host="primary.example",
                ecr_client=client,
            )
            is None
        )  # fmt: skip


def _ecr_client() -> object:
    return boto3.client(
        "ecr-public",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_ecr_public_is_chosen_for_public_ecr_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAMBDA_IMAGES_REGISTRY_USER", raising=False)
    client = _ecr_client()
    token = base64.b64encode(b"AWS:very-secret-token").decode()
    with Stubber(client) as stub:
        stub.add_response(
            "get_authorization_token",
            {
                "authorizationData": {
                    "authorizationToken": token,
                    "expiresAt": dt.datetime(2030, 1, 1),
                }
            },
            {},
        )
        creds = resolve_credentials(
            "public.ecr.aws", Settings(), environment_host="public.ecr.aws", ecr_client=client
        )
    assert creds is not None
    assert (creds.username, creds.password) == ("AWS", "very-secret-token")


def test_ecr_public_refusal_says_what_to_fix() -> None:
    client = _ecr_client()
    with Stubber(client) as stub:
        stub.add_client_error("get_authorization_token", "AccessDeniedException", "denied")
        with pytest.raises(RegistryError, match="ecr-public:GetAuthorizationToken"):
            ecr_public_credentials(client)


def test_rebuild_push_needs_a_registry() -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    result = CliRunner().invoke(cli, ["rebuild", "provided.debian12", "--push"])
    assert result.exit_code == 2
    assert "--push needs --registry" in result.output


def test_a_runtime_being_published_holds_its_locks_so_a_build_waits(
    tmp_path: Path, matrix: Matrix
) -> None:
    """publish reads the snapshots and rewrites the branch folder: no snapshot, build or branch
    layout of that runtime runs meanwhile (another process waits for the cell's lock)."""
    import subprocess
    import sys
    import textwrap

    from pipeline.orchestrate.release import _runtime_held

    runtime = matrix.runtime("provided.debian12")
    make_snapshot(tmp_path, runtime.id, "x86_64", "A")
    make_snapshot(tmp_path, runtime.id, "arm64", "A")
    run = Run.open(
        Settings.from_environ(
            {"LAMBDA_IMAGES_WORK": str(tmp_path), "LAMBDA_IMAGES_MATRIX": str(matrix.path)}
        )
    )
    waiter = textwrap.dedent(
        f"""
        from pathlib import Path
        from pipeline.workdir import WorkDir
        with WorkDir(Path({str(tmp_path)!r})).cell({runtime.id!r}, "arm64").locked():
            pass
        """
    )
    with _runtime_held(run, runtime):
        proc = subprocess.Popen([sys.executable, "-c", waiter], stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert proc.poll() is None  # still waiting while the publish holds the runtime
    assert proc.wait(timeout=60) == 0
    assert f"cell {runtime.id}/arm64 is in use by another lambda-images process" in line
