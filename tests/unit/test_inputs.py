"""Pinned url inputs: `lock` computes each sha256 from the artifact, unreachable ones stay
unlocked, a locked input enters the build context with its SHA256SUMS, and a changed artifact
is refused. The artifacts are served from 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.errors import InputError
from pipeline.inputs import fetch_inputs, lock_url_inputs
from pipeline.lock import Lock
from pipeline.matrix import Matrix, load_matrix

CONTENT = {"/rie-x86_64": b"emulator for x86_64\n", "/rie-arm64": b"emulator for arm64\n"}


@pytest.fixture
def server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = CONTENT.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def small_matrix(tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch) -> Matrix:

    (tmp_path / "runtimes.yaml").write_text(
        f"""operating_systems:
  al2023:
    name: Amazon Linux 2023
    architectures: [x86_64, arm64]
    base:
      image: {{reference: "public.ecr.aws/amazonlinux/amazonlinux:2023-minimal"}}
    packages: microdnf
families:
  provided:
    name: Custom Runtime
    template: provided
inputs:
  rie:
    version: "1"
    install_as: aws-lambda-rie
    urls:
      x86_64: {server}/rie-x86_64
      arm64: {server}/rie-arm64
  missing:
    version: "1"
    url: {server}/not-there
runtimes:
  - id: provided.al2023
    name: Custom Runtime
    family: provided
    version: al2023
    os: al2023
    architectures: [x86_64, arm64]
    inputs: {{emulator: rie}}
  - id: provided.broken
    name: Custom Runtime
    family: provided
    version: broken
    os: al2023
    architectures: [x86_64]
    inputs: {{emulator: missing}}
"""
    )
    return load_matrix(tmp_path / "runtimes.yaml")


def test_lock_computes_checksums_from_the_artifacts(small_matrix: Matrix) -> None:
    lock = Lock.for_matrix(small_matrix.path)
    assert (
        lock_url_inputs(
            small_matrix.runtime("provided.al2023"),
            lock,
            small_matrix.path.parent / "cache",
            environ={},
        )
        == []
    )
    lock.save()
    saved = Lock.for_matrix(small_matrix.path).inputs["rie"]
    assert saved == {
        "x86_64": hashlib.sha256(CONTENT["/rie-x86_64"]).hexdigest(),
        "arm64": hashlib.sha256(CONTENT["/rie-arm64"]).hexdigest(),
    }


def test_unreachable_inputs_stay_unlocked_and_stop_the_build(
    small_matrix: Matrix, tmp_path: Path
) -> None:
    lock = Lock.for_matrix(small_matrix.path)
    runtime = small_matrix.runtime("provided.broken")
    assert lock_url_inputs(runtime, lock, small_matrix.path.parent / "cache", environ={}) == [
        "missing/any"
    ]
    assert lock.inputs["missing"] == {"any": None}
    target = small_matrix.targets([runtime])[0]
    with pytest.raises(InputError, match=r"provided\.broken/x86_64: input 'missing'.*unlocked"):
        fetch_inputs(
            target, lock, tmp_path / "context", small_matrix.path.parent / "cache", environ={}
        )


def test_a_locked_input_enters_the_context_with_its_sums(
    small_matrix: Matrix, tmp_path: Path
) -> None:
    lock = Lock.for_matrix(small_matrix.path)
    runtime = small_matrix.runtime("provided.al2023")
    lock_url_inputs(runtime, lock, small_matrix.path.parent / "cache", environ={})
    target = small_matrix.targets([runtime], ["arm64"])[0]
    folder = fetch_inputs(
        target, lock, tmp_path / "context", small_matrix.path.parent / "cache", environ={}
    )
    assert folder is not None
    assert (folder / "rie-arm64").read_bytes() == CONTENT["/rie-arm64"]
    digest = hashlib.sha256(CONTENT["/rie-arm64"]).hexdigest()
    assert (folder / "SHA256SUMS").read_text() == f"{digest}  rie-arm64\n"


def test_a_damaged_file_in_the_cache_is_fetched_again_not_used(
    small_matrix: Matrix, tmp_path: Path
) -> None:
    lock = Lock.for_matrix(small_matrix.path)
    runtime = small_matrix.runtime("provided.al2023")
    cache = small_matrix.path.parent / "cache"
    lock_url_inputs(runtime, lock, cache, environ={})
    target = small_matrix.targets([runtime], ["arm64"])[0]
    digest = hashlib.sha256(CONTENT["/rie-arm64"]).hexdigest()
    (cache / digest).write_bytes(b"damaged, or planted")
    folder = fetch_inputs(target, lock, tmp_path / "context", cache, environ={})
    assert folder is not None
    assert (folder / "rie-arm64").read_bytes() == CONTENT["/rie-arm64"]
    assert (cache / digest).read_bytes() == CONTENT["/rie-arm64"]


def test_a_changed_artifact_is_refused(small_matrix: Matrix, tmp_path: Path) -> None:
    lock = Lock.for_matrix(small_matrix.path)
    lock.inputs["rie"] = {"x86_64": "0" * 64, "arm64": "0" * 64}
    target = small_matrix.targets([small_matrix.runtime("provided.al2023")], ["x86_64"])[0]
    with pytest.raises(InputError, match="refusing it"):
        fetch_inputs(
            target, lock, tmp_path / "context", small_matrix.path.parent / "cache", environ={}
        )


def test_an_unlocked_entry_is_never_downloaded(tmp_path: Path) -> None:
    from pipeline.inputs import download

    # Port 1 answers nothing: a download attempt would fail with "cannot download" instead.
    for unlocked in ("", "abc", "A" * 64):
        with pytest.raises(InputError, match=r"is unlocked .* refusing to download it unchecked"):
            download("http://127.0.0.1:1/pkg.tgz", unlocked, "npm node_modules/pkg", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_path_from_data_stays_inside_its_folder(tmp_path: Path) -> None:
    from pipeline.errors import ConfigurationError
    from pipeline.inputs import confined

    folder = tmp_path / "context" / "node_modules"
    folder.mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (folder / "linked").symlink_to(tmp_path / "outside")
    assert confined(folder, "a/node_modules/b", "npm[0]") == folder.resolve() / "a/node_modules/b"
    for escaping in ("../../escaped", "/etc", "linked/x", "a/../../x", "", "."):
        with pytest.raises(ConfigurationError, match=r"npm\[0\]: .* leads outside"):
            confined(folder, escaping, "npm[0]")
