"""Debian archives: a base's sources are the suite, -updates and -security; an archive's state
changes with its packages (not with a re-signing); newer versions are found the way Debian
compares them. The archives are flat repositories served from 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from cli_runner import lambda_images
from conftest import REPO

from pipeline import apt
from pipeline.base import mmdebstrap_command
from pipeline.errors import BaseImageError, ConfigurationError
from pipeline.lock import Lock
from pipeline.matrix import AptArchive, RootfsBase, load_matrix


def write_repo(folder: Path, packages: dict[str, str], date: str = "Mon, 30 Nov 2026") -> None:
    """A flat repository: a Packages index and a Release file that lists its sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    text = "\n".join(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nFilename: ./{name}.deb\n"
        for name, version in sorted(packages.items())
    )
    index = text.encode()
    (folder / "Packages").write_bytes(index)
    digest = hashlib.sha256(index).hexdigest()
    release = f"Date: {date}\nSHA256:\n {digest} {len(index)} Packages\n"
    (folder / "Release").write_text(release)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def flat(uri: str, path: str) -> AptArchive:
    return AptArchive(uri=f"{uri}/{path}", suite="./", components=(), trusted=True)


def test_a_debian_base_installs_from_the_suite_its_updates_and_its_security_archive() -> None:
    base = load_matrix(REPO / "runtimes.yaml").operating_systems["debian12"].base
    assert isinstance(base, RootfsBase)
    lines = [apt.sources_line(a) for a in apt.archives(base)]
    assert lines == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    argv = mmdebstrap_command(base, "arm64", Path("rootfs.tar"))
    assert argv[-5:] == ["bookworm", "rootfs.tar", *lines]


def test_extra_archives_come_after_debian_s_and_say_when_trusted(tmp_path: Path) -> None:
    text = (REPO / "runtimes.yaml").read_text()
    text = text.replace(
        "include: [ca-certificates]",
        "include: [ca-certificates]\n        extra_archives:\n"
        "          - {uri: 'http://127.0.0.1:8080/', suite: ./, trusted: true}\n"
        "          - {uri: 'https://apt.example.org/x', suite: stable, components: [main, extra]}",
        1,
    )
    (tmp_path / "runtimes.yaml").write_text(text)
    base = load_matrix(tmp_path / "runtimes.yaml").operating_systems["debian12"].base
    assert isinstance(base, RootfsBase)
    assert [apt.sources_line(a) for a in apt.archives(base)][3:] == [
        "deb [trusted=yes] http://127.0.0.1:8080/ ./",
        "deb https://apt.example.org/x stable main extra",
    ]


def test_an_extra_archive_without_a_url_is_refused_naming_the_line(tmp_path: Path) -> None:
    text = (REPO / "runtimes.yaml").read_text()
    text = text.replace(
        "include: [ca-certificates]",
        "include: [ca-certificates]\n        extra_archives:\n          - {uri: ftp://x, suite: a}",
        1,
    )
    (tmp_path / "runtimes.yaml").write_text(text)
    line = text.splitlines().index("          - {uri: ftp://x, suite: a}") + 1
    with pytest.raises(ConfigurationError) as err:
        load_matrix(tmp_path / "runtimes.yaml")
    assert str(err.value).startswith(f"{tmp_path / 'runtimes.yaml'}:{line}: ")
    assert "extra_archives[0].uri" in str(err.value)
    assert "an http(s) URL of an apt repository" in str(err.value)


def test_the_state_changes_with_the_packages_not_with_a_new_signature(
    served: tuple[Path, str],
) -> None:
    root, uri = served
    archive = flat(uri, "repo/")
    write_repo(root / "repo", {"libssl3": "3.0.20-1~deb12u2"})
    first = apt.read_state(archive, "amd64")
    write_repo(root / "repo", {"libssl3": "3.0.20-1~deb12u2"}, date="Tue, 01 Dec 2026")
    resigned = apt.read_state(archive, "amd64")
    write_repo(root / "repo", {"libssl3": "3.0.22-1~deb12u2"})
    updated = apt.read_state(archive, "amd64")
    assert first.release_sha256 != resigned.release_sha256
    assert first.digest == resigned.digest
    assert updated.digest != first.digest
    assert apt.states_digest([first]) != apt.states_digest([updated])


def test_an_unreachable_archive_is_a_base_image_error(served: tuple[Path, str]) -> None:
    _, uri = served
    with pytest.raises(BaseImageError, match=r"neither .*/nothing/InRelease nor Release exists"):
        apt.read_state(flat(uri, "nothing/"), "amd64")
    with pytest.raises(BaseImageError, match=r"cannot read http://127\.0\.0\.1:9/"):
        apt.read_state(flat("http://127.0.0.1:9", "x/"), "amd64")


def test_newer_versions_are_found_as_debian_orders_them(
    served: tuple[Path, str], tmp_path: Path
) -> None:
    root, uri = served
    # Compared as text, each of these would come out the other way round.
    write_repo(root / "suite", {"a": "1.9-1", "b": "2.0", "c": "1.0~rc1", "d": "1.0"})
    write_repo(root / "security", {"a": "1.10-1", "b": "1:0.9", "c": "1.0", "e": "5"})
    archives = [flat(uri, "suite/"), flat(uri, "security/")]
    newest = apt.newest_versions(archives, "amd64", tmp_path / "cache")
    installed = {"a": "1.9-1", "b": "2.0", "c": "1.0~rc1", "d": "1.0", "z": "1"}
    found = apt.upgrades(installed, newest)
    assert [(u.package, u.installed, u.available, u.suite) for u in found] == [
        ("a", "1.9-1", "1.10-1", "./"),
        ("b", "2.0", "1:0.9", "./"),
        ("c", "1.0~rc1", "1.0", "./"),
    ]
    # The indices are cached under their sha256 and used again without the server.
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_an_index_that_does_not_match_its_release_file_is_refused(
    served: tuple[Path, str], tmp_path: Path
) -> None:
    root, uri = served
    write_repo(root / "repo", {"a": "1"})
    (root / "repo" / "Packages").write_text("Package: a\nVersion: 2\n")
    with pytest.raises(BaseImageError, match="its Release file says"):
        apt.newest_versions([flat(uri, "repo/")], "amd64", tmp_path / "cache")


def test_only_installed_packages_count() -> None:
    status = (
        "Package: a\nStatus: install ok installed\nVersion: 1\n\n"
        "Package: b\nStatus: deinstall ok config-files\nVersion: 2\n\n"
        "Package: c\nStatus: install ok unpacked\nVersion: 3\n"
    )
    assert apt.installed_from_status(status) == {"a": "1"}


def test_the_lock_records_archive_states_and_refuses_a_malformed_one(tmp_path: Path) -> None:
    path = tmp_path / "runtimes.lock.json"
    lock = Lock(path=path)
    state = "sha256:" + "a" * 64
    lock.archives["debian12"] = {
        "x86_64": {
            "state": state,
            "archives": {"deb http://x bookworm main": {"inrelease": "b" * 64, "packages": state}},
        }
    }
    lock.save()
    again = Lock.load(path)
    assert again.archive_state("debian12", "x86_64") == state
    assert again.archive_state("debian12", "arm64") is None
    path.write_text(path.read_text().replace(state, "sha256:oops", 1))
    with pytest.raises(
        ConfigurationError, match=r"archives\.debian12\.x86_64\.state: 'sha256:oops'"
    ):
        Lock.load(path)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ("Architectures: amd64 arm64\n", ["main/binary-amd64/Packages"]),
        (
            "Architectures: all amd64\n",
            ["main/binary-all/Packages", "main/binary-amd64/Packages"],
        ),
        (
            "Architectures: all amd64\nNo-Support-for-Architecture-all: Packages\n",
            ["main/binary-amd64/Packages"],
        ),
    ],
)
def test_the_state_covers_the_indices_apt_reads(
    served: tuple[Path, str], fields: str, expected: list[str]
) -> None:
    root, uri = served
    dists = root / "debian" / "dists" / "stable"
    dists.mkdir(parents=True)
    listed = [
        f" {hashlib.sha256(name.encode()).hexdigest()} 1 {name}"
        for name in (
            "main/binary-all/Packages",
            "main/binary-amd64/Packages",
            "main/binary-amd64/Packages.xz",
            "main/binary-arm64/Packages",
            "contrib/binary-amd64/Packages",
        )
    ]
    (dists / "Release").write_text(fields + "SHA256:\n" + "\n".join(listed) + "\n")
    archive = AptArchive(uri=f"{uri}/debian", suite="stable", trusted=True)  # unsigned
    state = apt.read_state(archive, "amd64")
    assert [path for path, _ in state.indices] == expected
    assert (
        dict(state.indices)["main/binary-amd64/Packages"]
        == hashlib.sha256(b"main/binary-amd64/Packages").hexdigest()
    )


def test_lock_records_no_state_for_an_unreachable_archive_and_says_so(tmp_path: Path) -> None:
    text = (REPO / "runtimes.yaml").read_text()
    text = text.replace("mirror: http://deb.debian.org/debian\n", "mirror: http://127.0.0.1:9\n", 1)
    text = text.replace(
        "suite: bookworm\n", "suite: bookworm\n        security_mirror: http://127.0.0.1:9\n", 1
    )
    (tmp_path / "runtimes.yaml").write_text(text)
    shutil.copy(REPO / "runtimes.lock.json", tmp_path / "runtimes.lock.json")
    result = lambda_images(
        "--matrix", str(tmp_path / "runtimes.yaml"),
        "--work", str(tmp_path / "work"), "lock", "provided.debian12", timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "unlocked: debian12: archive state for x86_64" in result.stderr
    assert "unlocked: debian12: archive state for arm64" in result.stderr
    assert "Traceback" not in result.stderr
    assert "debian12" not in Lock.load(tmp_path / "runtimes.lock.json").archives


def write_dists(root: Path, version: str) -> None:
    """A dists/ archive (suite ``stable``, component ``main``) offering ``probe`` at
    ``version``, its index served by hash as Debian's are; older indices stay by hash."""
    folder = root / "dists" / "stable"
    index = f"Package: probe\nVersion: {version}\nArchitecture: amd64\n".encode()
    digest = hashlib.sha256(index).hexdigest()
    by_hash = folder / "main" / "binary-amd64" / "by-hash" / "SHA256"
    by_hash.mkdir(parents=True, exist_ok=True)
    (by_hash / digest).write_bytes(index)
    (folder / "main" / "binary-amd64" / "Packages").write_bytes(index)
    (folder / "Release").write_text(
        "Suite: stable\nArchitectures: amd64\nComponents: main\nAcquire-By-Hash: yes\n"
        f"SHA256:\n {digest} {len(index)} main/binary-amd64/Packages\n"
    )


def test_the_versions_of_a_recorded_state_are_read_back_after_the_archive_moved(
    served: tuple[Path, str], tmp_path: Path
) -> None:
    root, uri = served
    archive = AptArchive(uri=uri, suite="stable", components=("main",), trusted=True)
    write_dists(root, "1.0")
    then = apt.read_state(archive, "amd64")
    write_dists(root, "1.1")  # the archive moves on; the old index stays reachable by hash
    now = apt.newest_versions([archive], "amd64", tmp_path / "now")
    assert now["probe"].version == "1.1"
    recorded = {then.line: then.release}
    before = apt.newest_versions([archive], "amd64", tmp_path / "then", releases=recorded)
    assert before["probe"].version == "1.0"
