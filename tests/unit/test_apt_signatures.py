"""An archive's InRelease is believed only once gpgv has checked it against the archive's
keyring, as apt checks it: whoever sits on the plain-http path can neither forge an archive's
state (and make `outdated` and `refresh` say "current") nor serve an old one again. An archive
declared ``trusted: true`` is the one exception.

The archive is served from 127.0.0.1 and signed with a key made for this module (ed25519, in a
temporary GNUPGHOME); a second key stands for someone else's."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from pipeline import apt
from pipeline.errors import BaseImageError
from pipeline.matrix import AptArchive, RootfsBase

pytestmark = pytest.mark.skipif(
    shutil.which("gpg") is None or shutil.which("gpgv") is None,
    reason="gpg and gpgv are needed (apt-get install gpg gpgv)",
)

PACKAGES = b"Package: curl\nVersion: 7.88.1-10+deb12u8\nArchitecture: amd64\n"


@dataclasses.dataclass(frozen=True)
class Keys:
    home: Path
    keyring: Path  # the archive's key only, as gpg --export writes it
    archive: str  # its fingerprint
    other: str  # someone else's key, in the same GNUPGHOME but not in the keyring

    def sign(
        self, text: bytes, out: Path, key: str | None = None, *, detached: bool = False
    ) -> None:
        mode = ["--detach-sign"] if detached else ["--clearsign"]
        subprocess.run(
            ["gpg", "--batch", "--yes", "--local-user", key or self.archive, *mode, "-o", str(out)],
            input=text, env={**os.environ, "GNUPGHOME": str(self.home)}, check=True,
            capture_output=True,
        )  # fmt: skip


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}

    def make(uid: str) -> str:
        subprocess.run(
            ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "0"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        listed = subprocess.run(
            ["gpg", "--batch", "--with-colons", "--list-keys", uid],
            env=env, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        return next(line.split(":")[9] for line in listed.splitlines() if line.startswith("fpr"))

    archive = make("Test Archive <archive@test.invalid>")
    other = make("Someone Else <other@test.invalid>")
    keyring = home / "archive-keyring.gpg"
    exported = subprocess.run(
        ["gpg", "--batch", "--export", archive], env=env, check=True, capture_output=True
    ).stdout
    keyring.write_bytes(exported)
    yield Keys(home=home, keyring=keyring, archive=archive, other=other)
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False, capture_output=True)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/debian"
    httpd.shutdown()
    httpd.server_close()


def release(suite: str = "bookworm-security", extra: str = "", packages: bytes = PACKAGES) -> bytes:
    digest = hashlib.sha256(packages).hexdigest()
    return (
        f"Suite: stable-security\nCodename: {suite}\nArchitectures: amd64\nComponents: main\n"
        f"{extra}SHA256:\n {digest} {len(packages)} main/binary-amd64/Packages\n"
    ).encode()


def publish(root: Path, suite: str = "bookworm-security") -> Path:
    """dists/<suite>/ with its Packages index; the caller puts the (In)Release there."""
    dists = root / "debian" / "dists" / suite
    (dists / "main" / "binary-amd64").mkdir(parents=True)
    (dists / "main" / "binary-amd64" / "Packages").write_bytes(PACKAGES)
    return dists


def archive(uri: str, keys: Keys, **changes: object) -> AptArchive:
    fields: dict[str, object] = {
        "uri": uri, "suite": "bookworm-security", "keyring": str(keys.keyring), **changes
    }  # fmt: skip
    return AptArchive(**fields)  # type: ignore[arg-type]


def test_an_inrelease_signed_by_the_keyring_is_read(served: tuple[Path, str], keys: Keys) -> None:
    root, uri = served
    keys.sign(release(), publish(root) / "InRelease")
    state = apt.read_state(archive(uri, keys), "amd64")
    assert dict(state.indices) == {
        "main/binary-amd64/Packages": hashlib.sha256(PACKAGES).hexdigest()
    }


def test_only_the_signed_text_is_read(served: tuple[Path, str], keys: Keys) -> None:
    root, uri = served
    dists = publish(root)
    keys.sign(release(), dists / "InRelease")
    expected = apt.read_state(archive(uri, keys), "amd64").indices
    # Unsigned text after the signature (a second paragraph listing other indices) is not read.
    forged = f" {'0' * 64} 1 main/binary-amd64/Packages\n".encode()
    with (dists / "InRelease").open("ab") as out:
        out.write(b"\nSHA256:\n" + forged)
    assert apt.read_state(archive(uri, keys), "amd64").indices == expected


@pytest.mark.parametrize(
    ("make", "says"),
    [
        ("tampered", "its signature does not check out"),
        ("someone-else", "its signature does not check out"),
        ("unsigned", "its signature does not check out"),
        ("other-suite", "its InRelease is signed for 'bookworm / stable-security'"),
        ("expired", "its InRelease expired on Mon, 01 Jan 2024"),
    ],
)
def test_a_forged_or_replayed_inrelease_is_refused(
    served: tuple[Path, str], keys: Keys, tmp_path: Path, make: str, says: str
) -> None:
    root, uri = served
    dists = publish(root)
    inrelease = dists / "InRelease"
    if make == "tampered":  # the signed text changed after signing: another index's sha256
        keys.sign(release(), inrelease)
        text = inrelease.read_bytes()
        good = hashlib.sha256(PACKAGES).hexdigest().encode()
        inrelease.write_bytes(text.replace(good, b"0" * 64))
    elif make == "someone-else":
        keys.sign(release(), inrelease, keys.other)
    elif make == "unsigned":
        inrelease.write_bytes(release())
    elif make == "other-suite":  # bookworm's own InRelease served as bookworm-security's
        keys.sign(release("bookworm").replace(b"stable-security", b"stable"), inrelease)
        says = "its InRelease is signed for 'bookworm / stable', not 'bookworm-security'"
    elif make == "expired":  # a once-valid InRelease of -security, served again
        keys.sign(release(extra="Valid-Until: Mon, 01 Jan 2024 00:00:00 UTC\n"), inrelease)
    with pytest.raises(BaseImageError, match=says):
        apt.read_state(archive(uri, keys), "amd64")
    with pytest.raises(BaseImageError, match=says):
        apt.newest_versions([archive(uri, keys)], "amd64", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # no index was fetched


def test_a_release_with_a_detached_signature_is_read(served: tuple[Path, str], keys: Keys) -> None:
    root, uri = served
    dists = publish(root)
    (dists / "Release").write_bytes(release())
    keys.sign(release(), dists / "Release.gpg", detached=True)
    assert apt.read_state(archive(uri, keys), "amd64").indices
    keys.sign(release(), dists / "Release.gpg", keys.other, detached=True)
    with pytest.raises(BaseImageError, match="its signature does not check out"):
        apt.read_state(archive(uri, keys), "amd64")


def test_an_unsigned_archive_is_read_only_when_declared_trusted(served: tuple[Path, str]) -> None:
    root, uri = served
    (publish(root) / "Release").write_bytes(release())
    unsigned = AptArchive(uri=uri, suite="bookworm-security")
    with pytest.raises(BaseImageError, match="an unsigned archive must be declared trusted: true"):
        apt.read_state(unsigned, "amd64")
    assert apt.read_state(dataclasses.replace(unsigned, trusted=True), "amd64").indices


def test_a_missing_keyring_is_named_with_its_package(served: tuple[Path, str], keys: Keys) -> None:
    root, uri = served
    keys.sign(release(), publish(root) / "InRelease")
    with pytest.raises(BaseImageError, match=r"its keyring /nonexistent\.gpg does not exist"):
        apt.read_state(archive(uri, keys, keyring="/nonexistent.gpg"), "amd64")


def test_a_base_s_archives_carry_its_keyring_unless_an_extra_one_names_its_own() -> None:
    extra = AptArchive(uri="http://x.invalid/", suite="./", trusted=True)
    own = AptArchive(uri="http://y.invalid/", suite="stable", keyring="/k/y.gpg")
    base = RootfsBase(
        suite="bookworm", mirror="http://m.invalid/debian", keyring="/k/debian.gpg",
        extra_archives=(extra, own),
    )  # fmt: skip
    assert [a.keyring for a in apt.archives(base)] == ["/k/debian.gpg"] * 4 + ["/k/y.gpg"]
    assert RootfsBase(suite="bookworm", mirror="http://m.invalid/debian").keyring == (
        "/usr/share/keyrings/debian-archive-keyring.gpg"
    )


def test_a_damaged_index_in_the_cache_is_fetched_again(
    served: tuple[Path, str], keys: Keys, tmp_path: Path
) -> None:
    root, uri = served
    keys.sign(release(), publish(root) / "InRelease")
    cache = tmp_path / "cache"
    assert apt.newest_versions([archive(uri, keys)], "amd64", cache)["curl"].version
    (cached,) = cache.iterdir()
    cached.write_bytes(b"Package: curl\nVersion: 99\n")  # damaged (or planted)
    assert apt.newest_versions([archive(uri, keys)], "amd64", cache)["curl"].version == (
        "7.88.1-10+deb12u8"
    )
    assert cached.read_bytes() == PACKAGES


def test_a_keyring_is_no_part_of_a_root_s_identity() -> None:
    """It decides which archive states are believed, not what a root made from one holds: a
    keyring moved elsewhere rebuilds no base."""
    from pipeline.base import _rootfs_key

    extra = AptArchive(uri="http://127.0.0.1:1/", suite="./", components=(), trusted=True)
    plain = RootfsBase(suite="bookworm", mirror="http://m.invalid/debian", extra_archives=(extra,))
    moved = dataclasses.replace(
        plain,
        keyring="/k/debian.gpg",
        extra_archives=(dataclasses.replace(extra, keyring="/k/extra.gpg"),),
    )
    assert _rootfs_key(plain, "amd64", 0, "state") == _rootfs_key(moved, "amd64", 0, "state")
