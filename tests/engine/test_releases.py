"""Releases against a real registry and git remote, from small snapshots (no image builds):
dated tags from the release time and never moved, `latest` as runtimes.yaml declares it, AWS's
tag names, and mirrors that get the same digests or are reported behind."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cli_runner import lambda_images
from conftest import REPO
from publish_helpers import FAST_RETRY, credentials, git_head, make_runtime, publish_at
from servers import FaultProxy, RegistryServer

from pipeline.matrix import Matrix
from pipeline.oci.transport import RetryPolicy
from pipeline.publish.report import PublishReport

PROVIDED = "provided.debian12"
BOTH = ("x86_64", "arm64")
# 2026-11-30 09:00 and 10:00 UTC: two releases an hour apart, on a faked clock.
NINE = 1796029200
TEN = NINE + 3600


def all_tags(server: Any, repo: str) -> dict[str, str | None]:
    """Every tag of ``repo`` and the digest it names, read straight from the registry; the
    referrers tags (``sha256-…``, where the SBOMs are listed) are not release tags and left out."""
    response = server.get(f"/v2/{repo}/tags/list")
    if response.status_code == 404:
        return {}
    tags = [t for t in response.json()["tags"] or [] if not t.startswith("sha256-")]
    return {tag: server.tag_digest(repo, tag) for tag in tags}


def release_of(report: PublishReport, runtime: str) -> Any:
    return next(r for r in report.runtimes if r.runtime == runtime)


def test_two_releases_an_hour_apart_get_two_dated_tags_that_never_move(
    registry_server: Any, matrix: Matrix, tmp_path: Path, git_remote: str
) -> None:
    creds = credentials(registry_server)
    target = f"{registry_server.host}/dated"
    repo = "dated/provided"
    make_runtime(tmp_path / "a", PROVIDED, "A", BOTH)
    first = publish_at(
        matrix, [PROVIDED], work=tmp_path / "a", registry=target, credentials=creds,
        git_remote=git_remote, retry=FAST_RETRY, release=NINE,
    )  # fmt: skip
    make_runtime(tmp_path / "b", PROVIDED, "B", BOTH)
    second = publish_at(
        matrix, [PROVIDED], work=tmp_path / "b", registry=target, credentials=creds,
        git_remote=git_remote, retry=FAST_RETRY, release=TEN,
    )  # fmt: skip
    assert first.ok and second.ok
    a, b = release_of(first, PROVIDED), release_of(second, PROVIDED)
    assert (a.release, b.release) == ("2026.11.30.09", "2026.11.30.10")
    assert a.index != b.index
    assert all_tags(registry_server, repo) == {
        "debian12.2026.11.30.09": a.index,
        "debian12.2026.11.30.09-x86_64": a.manifests["x86_64"],
        "debian12.2026.11.30.09-arm64": a.manifests["arm64"],
        "debian12.2026.11.30.10": b.index,
        "debian12.2026.11.30.10-x86_64": b.manifests["x86_64"],
        "debian12.2026.11.30.10-arm64": b.manifests["arm64"],
        "debian12": b.index,
        "debian12-x86_64": b.manifests["x86_64"],
        "debian12-arm64": b.manifests["arm64"],
    }
    before, head = all_tags(registry_server, repo), git_head(git_remote, PROVIDED)

    # The first release's snapshot, changed (another digest), published again as that release.
    make_runtime(tmp_path / "c", PROVIDED, "A, rebuilt", BOTH)
    report_file = tmp_path / "report.json"
    again = publish_at(
        matrix, [PROVIDED], work=tmp_path / "c", registry=target, credentials=creds,
        git_remote=git_remote, retry=FAST_RETRY, release=NINE + 1800, report_path=report_file,
    )  # fmt: skip
    assert not again.ok
    reason = json.loads(report_file.read_text())["failed"][PROVIDED]
    assert reason.startswith(f"{target}/provided:debian12.2026.11.30.09-x86_64 already names ")
    assert "a dated tag is never moved, so nothing of this runtime was published" in reason
    assert all_tags(registry_server, repo) == before  # nothing moved, nothing added
    assert git_head(git_remote, PROVIDED) == head


def test_a_refused_release_is_one_line_and_exit_8_from_the_cli(
    registry_server: Any, matrix: Matrix, tmp_path: Path
) -> None:
    creds = credentials(registry_server)
    target = f"{registry_server.host}/hourly"
    make_runtime(tmp_path / "a", PROVIDED, "A", BOTH)
    first = publish_at(
        matrix, [PROVIDED], work=tmp_path / "a", registry=target, credentials=creds,
        retry=FAST_RETRY, release=NINE,
    )  # fmt: skip
    assert first.ok
    make_runtime(tmp_path / "b", PROVIDED, "B", BOTH)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LAMBDA_IMAGES_REGISTRY_USER": creds.username,
        "LAMBDA_IMAGES_REGISTRY_PASSWORD": creds.password,
        "LAMBDA_IMAGES_RELEASE_TIME": str(NINE + 60),  # the same hour: the same dated tags
    }
    proc = lambda_images(
        "--matrix", str(REPO / "runtimes.yaml"),
        "--work", str(tmp_path / "b"), "publish", PROVIDED, "--registry", target,
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 8, proc.stderr
    assert "Traceback" not in proc.stderr
    assert creds.password not in proc.stderr + proc.stdout
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(f"{PROVIDED}\t"))
    assert line.startswith(f"{PROVIDED}\tfailed\t{target}/provided:debian12.2026.11.30.09-x86_64")
    # Release A is still what every tag names.
    assert all_tags(registry_server, "hourly/provided") == release_of(first, PROVIDED).tags


def test_unchanged_content_is_no_new_release(
    registry_server: Any, matrix: Matrix, tmp_path: Path
) -> None:
    creds = credentials(registry_server)
    target = f"{registry_server.host}/same"
    make_runtime(tmp_path, PROVIDED, "A", BOTH)
    first = publish_at(
        matrix, [PROVIDED], work=tmp_path, registry=target, credentials=creds,
        retry=FAST_RETRY, release=NINE,
    )  # fmt: skip
    tags = all_tags(registry_server, "same/provided")
    later = publish_at(
        matrix, [PROVIDED], work=tmp_path, registry=target, credentials=creds,
        retry=FAST_RETRY, release=NINE + 5 * 86400,
    )  # fmt: skip
    rt = release_of(later, PROVIDED)
    assert (rt.status, rt.release, rt.tags_moved) == ("unchanged", "2026.11.30.09", [])
    assert rt.tags == release_of(first, PROVIDED).tags
    assert all_tags(registry_server, "same/provided") == tags


# The row runtimes.yaml marks latest per family, and one older row of the same family.
LATEST = {
    "nodejs": ("nodejs24.x", "nodejs22.x"),
    "python": ("python3.14", "python3.11.debian12"),
    "ruby": ("ruby3.4", "ruby3.3"),
    "java": ("java25", "java21"),
    "go": ("go1.x", None),
    "dotnet": ("dotnet10", "dotnetcore3.1"),
    "provided": ("provided.al2023", "provided.debian12"),
}


def test_latest_of_every_family_is_the_declared_row_under_aws_tag_names(
    registry_server: Any, matrix: Matrix, tmp_path: Path
) -> None:
    creds = credentials(registry_server)
    target = f"{registry_server.host}/aws"
    latest_ids = [pair[0] for pair in LATEST.values()]
    older_ids = [pair[1] for pair in LATEST.values() if pair[1]]
    extra = ["provided", "dotnetcore2.1"]  # Amazon Linux 1 rows: x86_64 only
    for rt_id in [*latest_ids, *older_ids, *extra]:
        make_runtime(tmp_path, rt_id, "A", matrix.runtime(rt_id).architectures)
    # The older rows after the latest ones: publishing them must not take `latest` away.
    report = publish_at(
        matrix, [*latest_ids, *older_ids, *extra], work=tmp_path, registry=target,
        credentials=creds, retry=FAST_RETRY, release=NINE,
    )  # fmt: skip
    assert report.ok, report.as_json()["failed"]
    for family, (latest_id, _) in LATEST.items():
        rt = release_of(report, latest_id)
        assert matrix.latest(matrix.families[family]).id == latest_id  # type: ignore[union-attr]
        repo = f"aws/{family}"
        assert registry_server.tag_digest(repo, "latest") == rt.index, family
        for arch in matrix.runtime(latest_id).architectures:
            assert registry_server.tag_digest(repo, f"latest-{arch}") == rt.manifests[arch]
        if "arm64" not in matrix.runtime(latest_id).architectures:
            assert registry_server.tag_digest(repo, "latest-arm64") is None
    # AWS's names for the old rows, and the arm64 latest that Lambda functions point at.
    assert (
        registry_server.tag_digest("aws/provided", "alami") == release_of(report, "provided").index
    )
    assert registry_server.tag_digest("aws/provided", "alami-x86_64") is not None
    core = release_of(report, "dotnetcore3.1")
    assert registry_server.tag_digest("aws/dotnet", "core3.1") == core.index
    assert registry_server.tag_digest("aws/dotnet", "core3.1-arm64") == core.manifests["arm64"]
    assert registry_server.tag_digest("aws/dotnet", "core2.1-x86_64") is not None
    assert registry_server.tag_digest("aws/go", "1") == release_of(report, "go1.x").index
    assert registry_server.tag_digest("aws/go", "1.2026.11.30.09-x86_64") is not None
    python = release_of(report, "python3.14")
    assert registry_server.tag_digest("aws/python", "latest-arm64") == python.manifests["arm64"]
    assert registry_server.tag_digest("aws/python", "3.14") == python.index


@pytest.fixture
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A second registry, stopped: each test starts it when it wants it up."""
    server = RegistryServer(tmp_path_factory.mktemp("mirror"))
    yield server
    server.stop()


def test_mirror_gets_the_same_digests_and_a_mirror_that_is_down_is_reported_behind(
    registry_server: Any, mirror: RegistryServer, matrix: Matrix, tmp_path: Path
) -> None:
    creds, mirror_creds = credentials(registry_server), credentials(mirror)
    target, copy = f"{registry_server.host}/primary", f"{mirror.host}/copy"
    make_runtime(tmp_path / "a", PROVIDED, "A", BOTH)
    make_runtime(tmp_path / "a", "python3.11.debian12", "A", BOTH)
    runtimes = [PROVIDED, "python3.11.debian12"]
    report_file = tmp_path / "down.json"
    down = publish_at(
        matrix, runtimes, work=tmp_path / "a", registry=target, credentials=creds,
        retry=RetryPolicy(attempts=2, initial=0.01, cap=0.05, timeout=5),
        release=NINE, mirrors=[(copy, mirror_creds)], report_path=report_file,
    )  # fmt: skip
    assert down.ok  # the primary is published although the mirror is down
    assert [r.status for r in down.runtimes] == ["published", "published"]
    for rt in down.runtimes:
        repo = "primary/" + rt.repository.rsplit("/", 1)[1]
        assert {t: registry_server.tag_digest(repo, t) for t in rt.tags} == rt.tags
    summary = json.loads(report_file.read_text())
    assert summary["mirrors"] == [copy]
    assert sorted(summary["mirrors_behind"][copy]) == sorted(runtimes)
    reasons = summary["mirrors_behind"][copy]
    # Probed once (GET /v2/), not retried runtime by runtime.
    assert all("GET /v2/" in r and "unreachable" in r for r in reasons.values()), reasons

    mirror.start()
    caught_up = publish_at(
        matrix, runtimes, work=tmp_path / "a", registry=target, credentials=creds,
        retry=FAST_RETRY, release=TEN, mirrors=[(copy, mirror_creds)],
    )  # fmt: skip
    assert caught_up.ok and caught_up.mirrors_behind == {}
    assert [r.status for r in caught_up.runtimes] == ["unchanged", "unchanged"]
    for rt in caught_up.runtimes:
        assert rt.release == "2026.11.30.09"  # the release that published it, on both
        assert rt.mirrors[copy].status == "published"
        name = rt.repository.rsplit("/", 1)[1]
        primary = {t: registry_server.tag_digest(f"primary/{name}", t) for t in rt.tags}
        copied = {t: mirror.tag_digest(f"copy/{name}", t) for t in rt.tags}
        assert copied == primary == rt.tags
        assert len(rt.tags) == 6  # dated and moving tags, per arch and index
        # Each image's SBOM is listed for it on the mirror as on the primary (referrers tag).
        for manifest in rt.manifests.values():
            referrers_tag = manifest.replace(":", "-")
            listed = registry_server.tag_digest(f"primary/{name}", referrers_tag)
            assert listed is not None
            assert mirror.tag_digest(f"copy/{name}", referrers_tag) == listed
        assert rt.index and rt.index in copied.values()
    # The mirror's blobs are byte for byte the primary's.
    layer = json.loads(
        requests.get(
            f"http://{mirror.host}/v2/copy/provided/manifests/debian12-arm64",
            auth=(mirror.username, mirror.password),
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            timeout=30,
        ).content
    )["layers"][0]["digest"]
    blob = registry_server.get(f"/v2/primary/provided/blobs/{layer}").content
    assert blob == mirror.get(f"/v2/copy/provided/blobs/{layer}").content


def test_a_mirror_gets_only_the_credentials_given_for_its_host(
    registry_server: Any, matrix: Matrix, tmp_path: Path
) -> None:
    """`publish --mirror` from the command line, the primary's credentials in the environment
    and the mirror's in the Docker config: the mirror sees its own or none, never the
    primary's (they were given for --registry's host only)."""
    primary = credentials(registry_server)
    (tmp_path / "mirror").mkdir()
    mirror = RegistryServer(tmp_path / "mirror", access_log=True)
    mirror.start()
    front = FaultProxy(mirror.host)  # records the Authorization header of every request
    try:
        own = "Basic " + base64.b64encode(f"AWS:{mirror.users['AWS']}".encode()).decode()
        config = tmp_path / "docker-config"
        config.mkdir()
        (config / "config.json").write_text(
            json.dumps({"auths": {front.host: {"auth": own.removeprefix("Basic ")}}})
        )
        make_runtime(tmp_path / "work", PROVIDED, "A", BOTH)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "LAMBDA_IMAGES_CACHE": str(tmp_path / "cache"),
            "LAMBDA_IMAGES_REGISTRY_USER": primary.username,
            "LAMBDA_IMAGES_REGISTRY_PASSWORD": primary.password,
            "DOCKER_CONFIG": str(config),
            "LAMBDA_IMAGES_RELEASE_TIME": str(NINE),
        }
        report = tmp_path / "report.json"
        proc = lambda_images(
            "--matrix", str(REPO / "runtimes.yaml"),
            "--work", str(tmp_path / "work"), "publish", PROVIDED,
            "--registry", f"{registry_server.host}/envcreds", "--mirror", f"{front.host}/copy",
            "--report", str(report), env=env, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(report.read_text())
        assert summary["mirrors_behind"] == {}
        tags = summary["runtimes"][0]["tags"]
        assert {t: mirror.tag_digest("copy/provided", t) for t in tags} == tags
    finally:
        front.close()
        mirror.stop()
    seen = set(front.authorizations)
    assert own in seen and seen <= {own, None}, "the mirror got credentials it was not given"
    assert len(front.authorizations) > 20
    logged = mirror.log_path.read_text()
    assert len(mirror.requests_logged()) >= len(front.authorizations)  # it saw them all
    assert "error authenticating user" not in logged
    assert primary.password not in logged + proc.stdout + proc.stderr + report.read_text()
