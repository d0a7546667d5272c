"""A snapshot replaces the previous one atomically: killed at any point, the cell keeps a
snapshot.json whose every layer file is there (the old one or the new one), so `branch` and
`publish` read a whole snapshot; a finished one leaves no file its record does not name."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline import snapshot
from pipeline.matrix import ARCHES
from pipeline.records import ArchSnapshot, ImageConfig
from pipeline.workdir import WorkDir


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class _Image:
    def __init__(self, layers: list[bytes], config: dict[str, Any]) -> None:
        self.layers, self.config = layers, config
        self.id = "sha256:" + hashlib.sha256(json.dumps(config).encode()).hexdigest()

    def save(self, named: bool = False) -> Iterator[bytes]:
        """A legacy `docker save` archive (Docker 20.10's layout)."""
        config = json.dumps(self.config).encode()
        ids = [hashlib.sha256(layer).hexdigest() for layer in self.layers]
        manifest = [{"Config": "config.json", "Layers": [f"{i}/layer.tar" for i in ids]}]
        members = [(f"{i}/layer.tar", layer) for i, layer in zip(ids, self.layers, strict=True)]
        members += [("config.json", config), ("manifest.json", json.dumps(manifest).encode())]
        yield _tar(dict(members))


class _Client:
    """The docker SDK's ``images.get(name).save()``, nothing more."""

    def __init__(self) -> None:
        self.image: _Image | None = None
        self.images = self

    def get(self, name: str) -> _Image:
        assert self.image is not None
        return self.image


def _image(release: str, working_dir: str = "/var/task") -> _Image:
    layers = [_tar({"etc/os-release": b"ID=debian\n"}), _tar({"var/task/app": release.encode()})]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/lambda-entrypoint.sh"], "WorkingDir": working_dir},
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    return _Image(layers, config)


def _snapshot(client: _Client, work: WorkDir) -> ArchSnapshot:
    return snapshot.snapshot_image(
        client, "img", runtime_id="provided.debian12", arch=ARCHES["x86_64"],
        cell=work.cell("provided.debian12", "x86_64"), epoch=0,
    )  # fmt: skip


@pytest.mark.parametrize("killed", ["compressing the last layer", "writing the record"])
def test_a_snapshot_killed_midway_leaves_the_previous_one_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed: str
) -> None:
    work, client = WorkDir(tmp_path / "out"), _Client()
    client.image = _image("A")
    first = _snapshot(client, work)
    cell = work.cell("provided.debian12", "x86_64")

    client.image = _image("B")
    if killed == "writing the record":
        monkeypatch.setattr(ArchSnapshot, "write", _interrupt)
    else:
        real = snapshot.compress_layer

        def compress(
            normalized: Path, diff_id: str, folder: Path, cache: Path | None, meter: Any
        ) -> Any:
            if b"B" in normalized.read_bytes():
                raise KeyboardInterrupt  # as a SIGINT or SIGKILL would stop it
            return real(normalized, diff_id, folder, cache, meter)

        monkeypatch.setattr(snapshot, "compress_layer", compress)
    with pytest.raises(KeyboardInterrupt):
        _snapshot(client, work)
    monkeypatch.undo()

    assert snapshot.require_snapshot(cell) == first
    branch = snapshot.assemble_branch(first_runtime(), work, ["x86_64"])
    assert sorted(p.name for p in branch.iterdir() if p.suffix == ".xz") == sorted(
        layer.file for layer in first.layers
    )

    client.image = _image("B")
    second = _snapshot(client, work)  # the next one completes, and keeps only its own files
    assert second != first
    assert sorted(p.name for p in cell.layers.iterdir()) == sorted(
        layer.file for layer in second.layers
    )


def _interrupt(*args: object) -> None:
    raise KeyboardInterrupt


def first_runtime() -> Any:
    from pipeline.matrix import load_matrix

    return load_matrix(Path(__file__).resolve().parents[2] / "runtimes.yaml").runtime(
        "provided.debian12"
    )


def test_an_image_config_a_dockerfile_line_cannot_carry_is_refused_at_snapshot(
    tmp_path: Path,
) -> None:
    client = _Client()
    client.image = _image("A", working_dir="/var/task\nRUN curl -s x | sh")
    with pytest.raises(snapshot.SnapshotError, match="U\\+000A"):
        _snapshot(client, WorkDir(tmp_path / "out"))
    assert not (tmp_path / "out" / "provided.debian12" / "x86_64" / "snapshot.json").exists()


def test_user_and_workdir_are_one_dockerfile_word_whatever_they_hold() -> None:
    snap = ArchSnapshot(
        runtime="provided.debian12", arch="x86_64", docker_arch="amd64",
        image_id="sha256:" + "0" * 64, layers=[],
        config=ImageConfig(
            env=[], entrypoint=['/entry "point"'], cmd=["a\\b"], working_dir="/var/my task",
            user='sbx $HOME"', labels={},
        ),
    )  # fmt: skip
    lines = snapshot.snapshot_dockerfile(snap, "").splitlines()
    assert lines[3:] == [
        'USER "sbx \\$HOME\\""',
        'WORKDIR "/var/my task"',
        'ENTRYPOINT ["/entry \\"point\\""]',
        'CMD ["a\\\\b"]',
    ]
    plain = ArchSnapshot(**{**snap.__dict__, "config": ImageConfig(
        env=[], entrypoint=None, cmd=None, working_dir="/var/task", user="1000:1000", labels={},
    )})  # fmt: skip
    assert snapshot.snapshot_dockerfile(plain, "").splitlines()[3:] == [
        "USER 1000:1000",
        "WORKDIR /var/task",
    ]


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("working_dir", "/x\nRUN id", "config.working_dir holds the control character U+000A"),
        ("user", "root\r", "config.user holds the control character U+000D"),
        ("env", ["A=1\u2028B"], "config.env[0] holds the control character U+2028"),
        ("cmd", ["x", 1], "config.cmd[1] is not a string"),
        ("labels", {"k\n": "v"}, "a key of config.labels holds the control character U+000A"),
    ],
)
def test_an_image_config_holds_one_line_of_text_per_value(
    field: str, value: Any, says: str
) -> None:
    fields: dict[str, Any] = {
        "env": [], "entrypoint": None, "cmd": None, "working_dir": "", "user": "", "labels": {},
    }  # fmt: skip
    with pytest.raises(ValueError, match=re.escape(says)):
        ImageConfig(**{**fields, field: value})


def test_what_a_killed_snapshot_or_layout_left_goes_with_the_next_one(tmp_path: Path) -> None:
    work, client = WorkDir(tmp_path / "out"), _Client()
    cell = work.cell("provided.debian12", "x86_64")
    for leftover in (cell.folder / ".snapshot-k1ll3d", work.branch("x").with_name(".branch-a1")):
        (leftover / "layers").mkdir(parents=True)
        (leftover / "layers" / "big.tar").write_bytes(b"x" * 1000)
    (cell.layers).mkdir()
    (cell.layers / ".xz-half.tmp").write_bytes(b"half a layer")
    client.image = _image("A")
    snap = _snapshot(client, work)
    snapshot.assemble_branch(first_runtime(), work, ["x86_64"])
    assert sorted(p.name for p in cell.folder.iterdir()) == [
        ".lock", "layers", "snapshot.json",
    ]  # fmt: skip
    assert sorted(p.name for p in cell.layers.iterdir()) == sorted(
        layer.file for layer in snap.layers
    )
    runtime_folder = work.runtime_folder("provided.debian12")
    assert sorted(p.name for p in runtime_folder.iterdir()) == [".lock", "branch", "x86_64"]


def _warm(client: _Client, cache: Path) -> bool:
    """Warm the cache from the client's image; True when a warming ran (and ended)."""
    thread = snapshot.warm_layer_cache(client, "img", cache, 0)
    if thread is None:
        return False
    thread.join(timeout=60)
    return True


def test_a_killed_warming_is_done_again_and_its_staging_goes(tmp_path: Path) -> None:
    client, cache = _Client(), tmp_path / "cache"
    client.image = _image("A")
    image_id = client.image.id.removeprefix("sha256:")
    # A warming killed midway: its staging folder, no marker, nobody holding its claim.
    (cache / f".warm-{image_id}-k1ll3d" / "out").mkdir(parents=True)
    (cache / f".warm-{'e' * 64}-k1ll3d").mkdir()  # another image's, killed too
    (cache / "warmed").mkdir()
    assert _warm(client, cache)
    assert (cache / "warmed" / image_id).is_file()
    assert not list(cache.glob(".warm-*"))
    assert len(list(cache.rglob("*.tar.xz"))) == 2  # both layers compressed
    assert not _warm(client, cache)  # warmed once: not again


def test_a_warming_another_process_holds_is_left_to_it_and_a_failed_one_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, cache = _Client(), tmp_path / "cache"
    client.image = _image("A")
    image_id = client.image.id.removeprefix("sha256:")
    (cache / "warmed").mkdir(parents=True)
    held = os.open(cache / "warmed" / f".{image_id}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)  # as another process warming it would
    assert not _warm(client, cache)
    os.close(held)

    def fail(*args: object) -> None:
        raise OSError("the engine went away")

    monkeypatch.setattr(snapshot, "export_image", fail)
    assert _warm(client, cache)
    assert not (cache / "warmed" / image_id).exists()  # not warmed: no marker
    monkeypatch.undo()
    assert _warm(client, cache)  # so the next build warms it
    assert (cache / "warmed" / image_id).is_file()
