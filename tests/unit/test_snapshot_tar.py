"""Layer normalization and snapshot Dockerfiles: pure functions, no engine."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from pipeline.matrix import ARCHES
from pipeline.oci.layers import deletions_above, normalize_layer, unchanged_folders
from pipeline.records import ArchSnapshot, ImageConfig, Layer
from pipeline.snapshot import snapshot_dockerfile

EPOCH = 1704067200


def _layer(path: Path, entries: list[tuple[str, bytes | None, dict[str, object]]]) -> Path:
    """A tar like Docker writes one: entries in the given (unsorted) order, real owners."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, extra in entries:
            info = tarfile.TarInfo(name)
            info.mtime = float(extra.get("mtime", 1900000000.5))  # type: ignore[arg-type]
            info.uname, info.gname = "builder", "builders"
            info.uid = int(extra.get("uid", 0))  # type: ignore[call-overload]
            if "link" in extra:
                info.type, info.linkname = tarfile.LNKTYPE, str(extra["link"])
                tar.addfile(info)
            elif data is None:
                info.type, info.mode = tarfile.DIRTYPE, int(extra.get("mode", 0o755))  # type: ignore[call-overload]
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), int(extra.get("mode", 0o644))  # type: ignore[call-overload]
                tar.addfile(info, io.BytesIO(data))
    return path


def _read(path: Path) -> list[tuple[str, str, int, int, str, str]]:
    with tarfile.open(path) as tar:
        return [
            (m.name, m.type.decode(), int(m.mtime), m.uid, m.uname, m.linkname)
            for m in tar.getmembers()
        ]


def test_normalized_layers_are_byte_identical_whatever_the_input_order(tmp_path: Path) -> None:
    entries: list[tuple[str, bytes | None, dict[str, object]]] = [
        ("var/task/b.py", b"b", {}),
        ("var", None, {}),
        ("var/task", None, {}),
        ("var/task/a.py", b"a", {"mtime": 1000.25}),
    ]
    one = _layer(tmp_path / "one.tar", entries)
    two = _layer(tmp_path / "two.tar", list(reversed(entries)))
    d1, s1 = normalize_layer(one, tmp_path / "n1.tar", EPOCH)
    d2, s2 = normalize_layer(two, tmp_path / "n2.tar", EPOCH)
    assert (tmp_path / "n1.tar").read_bytes() == (tmp_path / "n2.tar").read_bytes()
    assert (d1, s1) == (d2, s2)
    rows = _read(tmp_path / "n1.tar")
    assert [r[0] for r in rows] == ["var", "var/task", "var/task/a.py", "var/task/b.py"]
    assert {r[2] for r in rows} == {EPOCH, 1000}  # clamped to the epoch, older times kept
    assert {r[4] for r in rows} == {""}  # no owner names


def test_whiteouts_come_before_their_siblings(tmp_path: Path) -> None:
    src = _layer(
        tmp_path / "l.tar",
        [
            ("data", None, {}),
            ("data/a", b"two", {}),
            ("data/.wh..wh..opq", b"", {}),
            ("data/-dash", b"x", {}),
            ("data/.wh.k", b"", {}),
        ],
    )
    normalize_layer(src, tmp_path / "n.tar", EPOCH)
    names = [r[0] for r in _read(tmp_path / "n.tar")]
    assert names == ["data", "data/.wh..wh..opq", "data/.wh.k", "data/-dash", "data/a"]


def test_hard_links_point_backwards_after_sorting(tmp_path: Path) -> None:
    # Docker may write the data under the later name and link the earlier one to it.
    src = _layer(
        tmp_path / "l.tar",
        [("usr/bin/zz", b"binary", {"mode": 0o755}), ("usr/bin/aa", None, {"link": "usr/bin/zz"})],
    )
    normalize_layer(src, tmp_path / "n.tar", EPOCH)
    with tarfile.open(tmp_path / "n.tar") as tar:
        aa, zz = tar.getmember("usr/bin/aa"), tar.getmember("usr/bin/zz")
        assert aa.isreg() and zz.islnk() and zz.linkname == "usr/bin/aa"
        assert tar.extractfile(aa).read() == b"binary"  # type: ignore[union-attr]
        out = tmp_path / "x"
        tar.extractall(out, filter="tar")
    assert (out / "usr/bin/zz").read_bytes() == b"binary"


def test_snapshot_dockerfile_adds_layers_in_image_order_and_restores_config() -> None:
    layers = [
        Layer(
            file=f"{c * 64}.tar.xz",
            sha256=c * 64,
            diff_id="sha256:" + c * 64,
            size=1,
            compressed_size=1,
        )
        for c in "fa"  # deliberately not sorted
    ]
    snap = ArchSnapshot(
        runtime="python3.11.debian12",
        arch="arm64",
        docker_arch=ARCHES["arm64"].docker,
        image_id="sha256:" + "0" * 64,
        layers=layers,
        config=ImageConfig(
            env=["PATH=/var/lang/bin:/usr/bin", 'ODD=has "quotes" and $dollar'],
            entrypoint=["/lambda-entrypoint.sh"],
            cmd=None,
            working_dir="/var/task",
            user="",
            labels={"org.opencontainers.image.version": "3.11"},
        ),
    )
    text = snapshot_dockerfile(snap, "arm64/")
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines[0] == "FROM scratch"
    assert lines[1] == f"ADD arm64/{'f' * 64}.tar.xz /"
    assert lines[2] == f"ADD arm64/{'a' * 64}.tar.xz /"
    assert 'ENV ODD="has \\"quotes\\" and \\$dollar"' in lines
    assert lines[-2:] == ["WORKDIR /var/task", 'ENTRYPOINT ["/lambda-entrypoint.sh"]']


def _names(path: Path) -> list[str]:
    return [entry[0].rstrip("/") for entry in _read(path)]


def test_deletions_are_folded_into_the_layers_below_and_no_whiteout_is_written(
    tmp_path: Path,
) -> None:
    base = _layer(
        tmp_path / "base.tar",
        [
            ("etc", None, {}),
            ("etc/apt", None, {}),
            ("etc/apt/old", b"x", {}),
            ("etc/hostname", b"h", {}),
            ("var", None, {}),
            ("var/log", None, {}),
            ("var/log/apt", None, {}),
            ("var/log/apt/history.log", b"l", {}),
        ],
    )
    run = _layer(
        tmp_path / "run.tar",
        [
            ("etc", None, {}),
            ("etc/apt", None, {}),
            ("etc/apt/.wh..wh..opq", b"", {}),  # replaces etc/apt/old
            ("etc/apt/new", b"y", {}),
            ("etc/gss", None, {}),
            ("etc/gss/.wh..wh..opq", b"", {}),  # a new directory: hides nothing
            ("var/log/.wh.apt", b"", {}),  # a directory and what is in it
            ("etc/.wh.hostname", b"", {}),
        ],
    )
    above = deletions_above([base, run])
    normalize_layer(base, tmp_path / "base.n.tar", EPOCH, above[0])
    normalize_layer(run, tmp_path / "run.n.tar", EPOCH, above[1])
    assert _names(tmp_path / "base.n.tar") == ["etc", "etc/apt", "var", "var/log"]
    assert _names(tmp_path / "run.n.tar") == ["etc", "etc/apt", "etc/apt/new", "etc/gss"]
    normalize_layer(run, tmp_path / "raw.tar", EPOCH)  # without what is above: whiteouts kept
    assert sum(".wh." in name for name in _names(tmp_path / "raw.tar")) == 4


def test_a_deletion_reaches_every_layer_below_but_not_the_ones_above(tmp_path: Path) -> None:
    one = _layer(tmp_path / "1.tar", [("data", None, {}), ("data/a", b"1", {})])
    two = _layer(
        tmp_path / "2.tar", [("data", None, {}), ("data/a", b"2", {}), ("data/b", b"", {})]
    )
    three = _layer(tmp_path / "3.tar", [("data/.wh.a", b"", {})])
    four = _layer(tmp_path / "4.tar", [("data", None, {}), ("data/a", b"4", {})])
    above = deletions_above([one, two, three, four])
    for index, tar in enumerate([one, two, three, four]):
        normalize_layer(tar, tmp_path / f"{index}.n.tar", EPOCH, above[index])
    assert _names(tmp_path / "0.n.tar") == ["data"]
    assert _names(tmp_path / "1.n.tar") == ["data", "data/b"]
    assert _names(tmp_path / "2.n.tar") == []
    assert _names(tmp_path / "3.n.tar") == ["data", "data/a"]


def test_a_hard_link_keeps_its_data_when_the_file_it_links_to_is_deleted_above(
    tmp_path: Path,
) -> None:
    base = _layer(
        tmp_path / "base.tar",
        [("bin", None, {}), ("bin/old", b"tool", {}), ("bin/new", None, {"link": "bin/old"})],
    )
    run = _layer(tmp_path / "run.tar", [("bin/.wh.old", b"", {})])
    normalize_layer(base, tmp_path / "n.tar", EPOCH, deletions_above([base, run])[0])
    with tarfile.open(tmp_path / "n.tar") as tar:
        assert tar.getnames() == ["bin", "bin/new"]
        new = tar.getmember("bin/new")
        assert new.isreg()
        extracted = tar.extractfile(new)
        assert extracted is not None and extracted.read() == b"tool"


def _normalized_stack(tmp_path: Path, tag: str, layers: list[Path]) -> list[bytes]:
    above, unchanged = deletions_above(layers), unchanged_folders(layers)
    out = []
    for index, tar in enumerate(layers):
        dest = tmp_path / f"{tag}-{index}.n.tar"
        normalize_layer(tar, dest, EPOCH, above[index], unchanged[index])
        out.append(dest.read_bytes())
    return out


def test_a_folder_entry_that_changes_nothing_is_left_out_so_both_builders_agree(
    tmp_path: Path,
) -> None:
    # What Docker 26's BuildKit and Docker 20.10's classic builder commit for the same
    # `RUN python -m compileall /var/runtime`: BuildKit also lists etc/, whose time the step's
    # /etc/hosts mount point touched; nothing in it changed.
    base = _layer(
        tmp_path / "base.tar",
        [("etc", None, {}), ("etc/hosts", b"", {}), ("var", None, {}), ("var/runtime", None, {})],
    )
    compiled = [
        ("var", None, {}),
        ("var/runtime", None, {}),
        ("var/runtime/__pycache__", None, {}),
        ("var/runtime/__pycache__/b.cpython-311.pyc", b"pyc", {}),
    ]
    classic = _layer(tmp_path / "classic.tar", compiled)
    buildkit = _layer(tmp_path / "buildkit.tar", [("etc", None, {"mtime": 1990000000}), *compiled])
    one = _normalized_stack(tmp_path, "classic", [base, classic])
    two = _normalized_stack(tmp_path, "buildkit", [base, buildkit])
    assert one == two
    assert _names(tmp_path / "buildkit-1.n.tar") == [
        "var",
        "var/runtime",
        "var/runtime/__pycache__",
        "var/runtime/__pycache__/b.cpython-311.pyc",
    ]


def test_a_folder_entry_that_changes_its_folder_or_makes_it_anew_is_kept(tmp_path: Path) -> None:
    base = _layer(
        tmp_path / "base.tar",
        [
            ("opt", None, {}),
            ("srv", None, {}),
            ("srv/old", b"", {}),
            ("tmp", None, {"mode": 0o1777}),
        ],
    )
    run = _layer(
        tmp_path / "run.tar",
        [
            ("opt", None, {"mode": 0o700}),  # chmod 0700 /opt
            ("srv", None, {}),  # rm -rf /srv && mkdir /srv: made anew, empty
            ("srv/.wh..wh..opq", b"", {}),
            # The same, with the folder type's bits in the mode as Docker's tar writer puts
            # them (0o40000): changes nothing.
            ("tmp", None, {"mode": 0o41777}),
            ("var", None, {}),  # mkdir /var: new
        ],
    )
    assert unchanged_folders([base, run]) == [frozenset(), frozenset({"tmp"})]
    _normalized_stack(tmp_path, "run", [base, run])
    assert _names(tmp_path / "run-1.n.tar") == ["opt", "srv", "var"]
    with tarfile.open(tmp_path / "run-1.n.tar") as tar:
        assert tar.getmember("opt").mode == 0o700
    assert _names(tmp_path / "run-0.n.tar") == ["opt", "srv", "tmp"]
