"""The one reader of layer tars (pipeline/oci/tree.py): whiteouts, opaque folders and hard
links mean the same to the snapshot, the conformance checks, the SBOM and outdated."""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

from pipeline.oci import tree
from pipeline.outdated import _status_in_layer


def _layer(entries: dict[str, bytes | str | None]) -> io.BytesIO:
    """A layer tar: bytes are a file, None a folder, a str starting with '>' a hard link."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(data, str):
                info.type, info.linkname = tarfile.LNKTYPE, data[1:]
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out


def _read(entries: dict[str, bytes | str | None]) -> tree.LayerEntries[bytes]:
    return tree.read_layer(_layer(entries), lambda _name, _m, content: content.read())


def test_whiteouts_and_opaque_markers_delete_from_the_layers_below_only() -> None:
    bottom = _read({"etc": None, "etc/a": b"a", "opt": None, "opt/x/y": b"y", "keep": b"k"})
    top = _read(
        {
            "etc/.wh..wh..opq": b"",
            "etc/b": b"b",  # the opaque marker leaves its own layer's entries alone
            ".wh.opt": b"",
        }
    )
    files = tree.FileTree([bottom, top])
    assert sorted(files.entries) == ["etc", "etc/b", "keep"]
    assert top.whiteouts == [tree.Whiteout("etc", opaque=True), tree.Whiteout("opt")]


def test_a_file_replaces_a_folders_tree_and_a_hard_link_shares_its_targets_content() -> None:
    bottom = _read({"lib": None, "lib/a.so": b"a"})
    top = _read({"lib": b"now a file", "bin/tool": b"\x7fELF", "bin/alias": ">bin/tool"})
    files = tree.FileTree([bottom, top])
    assert sorted(files.entries) == ["bin/alias", "bin/tool", "lib"]
    assert files.entries["bin/alias"].kind == "hardlink"
    assert files.entries["bin/alias"].seen == b"\x7fELF"


def test_deletions_above_a_layer_hide_what_a_whiteout_or_an_opaque_folder_names() -> None:
    above = tree.Deletions().plus(["usr/.wh.old", "var/cache/.wh..wh..opq", "plain"])
    assert above.hides("usr/old") and above.hides("usr/old/deeper")
    assert above.hides("var/cache/x") and not above.hides("var/cache")
    assert not above.hides("usr/older") and not above.hides("plain")


def test_outdated_finds_the_dpkg_status_a_layer_holds_or_hides(tmp_path: Path) -> None:
    def layer(entries: dict[str, bytes | str | None]) -> Path:
        path = tmp_path / f"layer{len(list(tmp_path.iterdir()))}.tar"
        path.write_bytes(_layer(entries).getvalue())
        return path

    assert _status_in_layer(layer({"var/lib/dpkg/status": b"Package: a\n"})) == "Package: a\n"
    assert _status_in_layer(layer({"var/lib/.wh.dpkg": b""})) == ""
    assert _status_in_layer(layer({"var/.wh..wh..opq": b""})) == ""
    assert _status_in_layer(layer({"etc/x": b"x"})) is None


def _reference(layers: list[tree.LayerEntries[bytes]]) -> list[str]:
    """The merged tree as the OCI spec words it, one scan per deletion (quadratic, small
    inputs only): what FileTree's index must give."""
    entries: dict[str, tree.Entry[bytes]] = {}
    for layer in layers:
        for gone in layer.whiteouts:
            entries = {p: e for p, e in entries.items() if not gone.hides(p)}
        for entry in layer.entries:
            old = entries.get(entry.path)
            if old is not None and old.kind == "dir" and entry.kind != "dir":
                entries = {
                    p: e for p, e in entries.items() if not tree.Whiteout(entry.path).hides(p)
                }
            entries[entry.path] = entry
    return sorted(entries)


def test_the_merged_tree_is_the_one_the_spec_describes_for_random_stacks() -> None:
    rng = random.Random(23)
    names = ["a", "a/b", "a/b/c", "a/b/d", "a/e", "f", "f/g", "h/i/j", "h/k"]
    for _ in range(300):
        layers = []
        for _ in range(rng.randint(1, 4)):
            entries: dict[str, bytes | str | None] = {}
            for name in rng.sample(names, rng.randint(1, 5)):
                kind = rng.choice(["file", "dir", "whiteout", "opaque"])
                folder, _, base = name.rpartition("/")
                if kind == "whiteout":
                    entries[f"{folder}/.wh.{base}" if folder else f".wh.{base}"] = b""
                elif kind == "opaque":
                    entries[f"{name}/.wh..wh..opq"] = b""
                else:
                    entries[name] = None if kind == "dir" else name.encode()
            layers.append(_read(entries))
        assert sorted(tree.FileTree(layers).entries) == _reference(layers), layers


def test_a_whiteout_of_nothing_and_an_opaque_root_mean_what_the_spec_says() -> None:
    bottom = _read({"etc": None, "etc/a": b"a", "keep": b"k"})
    assert sorted(tree.FileTree([bottom, _read({".wh.": b""})]).entries) == ["etc", "etc/a", "keep"]
    assert sorted(tree.FileTree([bottom, _read({".wh..wh..opq": b"", "new": b"n"})]).entries) == [
        "new"
    ]
    above = tree.Deletions().plus([".wh..wh..opq"])
    assert above.hides("anything/at/all")
