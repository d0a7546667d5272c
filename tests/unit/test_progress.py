"""Progress of the steps that move bytes (pipeline/progress.py).

At a pseudo-terminal, a download from a local HTTP server, the compression of a layer, an upload
to a local stand-in registry and a Debian root being made (a stand-in for mmdebstrap that writes
its root slowly) each show their bytes, expected total, rate and time left, through the code the
stages run (inputs.download, snapshot.compress_xz, Registry.push_blob, base._watched). The same
run with its output in a file writes no carriage return and no escape sequence. In a log, lines
are few: none for a transfer done within two seconds, then at most one per tenth or half-minute,
and one at the end (a fake clock drives those)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rich.console import Console

from pipeline import log, progress

REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20
SLOW = 1.2  # seconds each transfer takes: the terminal redraws 4 times a second
UPLOAD = 16 * MIB  # more than the loopback's socket buffers take in at once

SCRIPT = """
import os, sys, threading
from pathlib import Path
from pipeline import base, progress
from pipeline.inputs import download
from pipeline.oci.registry import Registry
from pipeline.snapshot import compress_xz

work, port = Path(sys.argv[1]), sys.argv[2]
layer = work / "layer.tar"

def fetch():
    download(f"http://127.0.0.1:{port}/blob.bin", None, "a test blob", work / "cache")

def compress():
    with progress.transfer("compress layer.tar", layer.stat().st_size) as meter:
        compress_xz(layer, work / "out", meter)

def upload():
    blob = work / "blob.bin"
    Registry(f"127.0.0.1:{port}", scheme="http").push_blob("lambda/test", sys.argv[3], blob)

def root():
    staging = work / "staging"
    staging.mkdir()
    with progress.transfer("debian12/arm64 root (mmdebstrap)", 2 << 20) as meter:
        env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(staging)}
        base._watched([str(work / "mmdebstrap")], env, staging, meter)

threads = [threading.Thread(target=t) for t in (fetch, compress, upload, root)]
for t in threads: t.start()
for t in threads: t.join()
"""

# Writes a 2 MiB root in 16 steps over 3 seconds (the root is measured once a second), under
# $TMPDIR as mmdebstrap does.
FAKE_MMDEBSTRAP = """#!/bin/sh
mkdir -p "$TMPDIR/mmdebstrap.x/usr/lib"
for i in $(seq 16); do
  head -c 131072 /dev/zero > "$TMPDIR/mmdebstrap.x/usr/lib/f$i"
  sleep 0.19
done
"""


class Server(BaseHTTPRequestHandler):
    """A 2 MiB download, and a registry that takes an upload in SLOW seconds."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if self.path != "/blob.bin":
            self._reply(200)  # GET /v2/: the registry answers, no credentials asked
            return
        self.send_response(200)
        self.send_header("Content-Length", str(2 * MIB))
        self.end_headers()
        for _ in range(16):
            self.wfile.write(b"\0" * (MIB // 8))
            time.sleep(SLOW / 16)

    def do_HEAD(self) -> None:
        self._reply(404)

    def do_POST(self) -> None:
        self._reply(202, {"Location": "/v2/lambda/test/blobs/uploads/1"})

    def do_PUT(self) -> None:
        left, digest = int(self.headers["Content-Length"]), hashlib.sha256()
        while left:
            chunk = self.rfile.read(min(left, UPLOAD // 16))
            digest.update(chunk)
            left -= len(chunk)
            time.sleep(SLOW / 16)
        self._reply(201, {"Docker-Content-Digest": f"sha256:{digest.hexdigest()}"})


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


def prepared(folder: Path) -> tuple[Path, str]:
    folder.mkdir()
    layer = folder / "layer.tar"
    layer.write_bytes(os.urandom(MIB // 2) * 4)  # 2 MiB that xz works on for a while
    (folder / "out").mkdir()
    blob = folder / "blob.bin"
    blob.write_bytes(bytes(UPLOAD))
    fake = folder / "mmdebstrap"
    fake.write_text(FAKE_MMDEBSTRAP)
    fake.chmod(0o755)
    return folder, "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()


def start(folder: Path, digest: str, port: int, out: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(folder), str(port), digest],
        stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "COLUMNS": "120",
             "TERM": "xterm", "HOME": str(folder)},
    )  # fmt: skip


def read_all(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other end has closed
            return out
        if not chunk:
            return out
        out += chunk


def test_transfers_show_bytes_and_time_left_on_a_terminal_and_plain_lines_in_a_file(
    tmp_path: Path, server: int
) -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    folder, digest = prepared(tmp_path / "tty")
    on_tty = start(folder, digest, server, follower)
    os.close(follower)
    logged = tmp_path / "log.txt"
    with logged.open("wb") as log_file:
        in_file = start(*prepared(tmp_path / "file"), server, log_file.fileno())
        screen = read_all(leader).decode()
        assert on_tty.wait(60) == 0, screen
        assert in_file.wait(60) == 0, logged.read_text()
    os.close(leader)

    frames = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen).replace("\r", "\n")
    # Each transfer, as it goes: bytes done of the total, a rate, and time left in h:mm:ss.
    going = r"\s+━*\S*\s+(\d+\.\d)/{}\.0 MiB\s+(?:\S+ \S+/s|\?)\s+eta\s+(\d:\d\d:\d\d|-:--:--)"
    titles = {"download blob.bin": 2, "compress layer.tar": 2,
              f"upload {digest[7:19]} to 127.0.0.1:{server}/lambda/test": 16,
              r"debian12/arm64 root \(mmdebstrap\)": 2}  # fmt: skip
    for title, mib in titles.items():
        seen = re.findall(title + going.format(mib), frames)
        assert seen, (title, frames)
        if "compress" not in title:  # xz reads its input a block ahead: one jump, no eta
            assert [d for d, eta in seen if 0 < float(d) < mib and eta[0] != "-"], (title, seen)
        # When it ends, its line stays: the bytes, the time, the rate.
        # (A root is measured once a second, and removed once packed: its last measure.)
        size = r"\d\.\d" if "root" in title else f"{mib}\\.0"
        end = rf"^    {title}: {size} MiB in \d+\.\ds, \S+ \S+/s$"
        assert re.search(end, frames, re.M), title

    text = logged.read_bytes()
    assert b"\r" not in text and b"\x1b" not in text
    # Plain lines only: how far a transfer is (once it has taken two seconds), and its end;
    # the root takes three seconds, so it has both.
    lines = text.decode().splitlines()
    assert lines[0] == f"+ GET http://127.0.0.1:{server}/blob.bin"
    title = r"    (download blob\.bin|compress layer\.tar|upload \w+ to \S+|debian12/\S+ root \S+)"
    going = r"[\d.]+ [KM]iB of [\d.]+ MiB \(\d+%\), [\d.]+ [KM]iB/s(, eta \d+:\d\d)?"
    ended = r"[\d.]+ [KM]iB in [\d.]+s, [\d.]+ [KM]iB/s"
    assert all(re.fullmatch(f"{title}: ({going}|{ended})", line) for line in lines[1:]), lines
    root = [line for line in lines if "root" in line]
    assert re.fullmatch(f"{title}: {going}", root[0])
    assert re.fullmatch(f"{title}: {ended}", root[-1])


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    return now


def test_a_log_gets_a_line_per_tenth_or_half_minute_and_none_for_a_quick_transfer(
    clock: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    with progress.transfer("quick", 10 * MIB) as meter:
        clock[0] += 1.5
        meter.advance(10 * MIB)
    assert capsys.readouterr().err == ""

    with progress.transfer("upload big", 100 * MIB) as meter:
        for _ in range(100):  # 1 MiB a second
            clock[0] += 1
            meter.advance(MIB)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "    upload big: 2.0 MiB of 100.0 MiB (2%), 1.0 MiB/s, eta 1:38"
    assert lines[1] == "    upload big: 10.0 MiB of 100.0 MiB (10%), 1.0 MiB/s, eta 1:30"
    assert len(lines) == 1 + 10 + 1  # the first, one per tenth (the last at 100 %), the end
    assert lines[-1] == "    upload big: 100.0 MiB in 100.0s, 1.0 MiB/s"

    with progress.transfer("a root, size unknown", None) as meter:
        for _ in range(120):
            clock[0] += 1
            meter.advance(MIB)
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == ["    a root, size unknown: 2.0 MiB, 1.0 MiB/s",
                         "    a root, size unknown: 32.0 MiB, 1.0 MiB/s"]  # fmt: skip
    assert len(lines) == 1 + 3 + 1  # then every half-minute (62, 92), and the end


def test_an_estimate_that_falls_short_grows_and_a_stopped_transfer_says_so(
    clock: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(OSError), progress.transfer("debian12/arm64 root", 4 * MIB) as meter:
        clock[0] += 3
        meter.update(6 * MIB)
        assert meter.total == 6 * MIB
        raise OSError("disk full")
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "    debian12/arm64 root: 6.0 MiB of 6.0 MiB (100%), 2.0 MiB/s, eta 0:00",
        "    debian12/arm64 root: stopped after 6.0 MiB in 3.0s, 2.0 MiB/s",
    ]


def test_github_actions_gets_plain_lines_even_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(log, "console", Console(stderr=True, force_terminal=True))
    assert progress.on_terminal()
    log.configure(github_actions=True)
    try:
        assert not progress.on_terminal()
    finally:
        log.configure(github_actions=False)
