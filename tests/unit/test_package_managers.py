"""The Debian rows' package managers (role `package_manager`): pip's wheel and npm's tarball are
installed on the build machine into the context's package-manager/ folder, laid out as they land
in the image, and the template copies that folder; the Python rows never unpack Debian's
EXTERNALLY-MANAGED marker."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

from conftest import REPO

from pipeline.inputs import fetch_package_managers
from pipeline.lock import Lock
from pipeline.matrix import Matrix, Target, load_matrix
from pipeline.render import render_target

MATRIX: Matrix = load_matrix(REPO / "runtimes.yaml")


def target(runtime_id: str, arch: str = "arm64") -> Target:
    (found,) = MATRIX.targets([MATRIX.runtime(runtime_id)], [arch])
    return found


def cached(cache: Path, lock: Lock, runtime_id: str, data: bytes) -> None:
    """Put ``data`` in the inputs cache as the row's package manager, and pin it in ``lock``."""
    (item,) = dict(MATRIX.runtime(runtime_id).inputs)["package_manager"]
    digest = hashlib.sha256(data).hexdigest()
    cache.mkdir(parents=True, exist_ok=True)
    (cache / digest).write_bytes(data)
    lock.inputs[item.name] = {item.key("arm64"): digest}


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root``: a link's target, or a file's mode."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = oct(path.stat().st_mode & 0o777)
    return out


def npm_tarball(version: str) -> bytes:
    files = {
        "package.json": json.dumps(
            {
                "name": "npm",
                "version": version,
                "bin": {"npm": "bin/npm-cli.js", "npx": "bin/npx-cli.js"},
            }
        ),
        "bin/npm-cli.js": "#!/usr/bin/env node\nrequire('../lib/cli.js')(process)\n",
        "bin/npx-cli.js": "#!/usr/bin/env node\n",
        "lib/cli.js": "module.exports = () => {}\n",
        "node_modules/abbrev/package.json": '{"name": "abbrev"}',
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_npm_is_laid_out_as_a_global_install_with_its_commands_linked(tmp_path: Path) -> None:
    lock, cache = Lock(path=tmp_path / "runtimes.lock.json"), tmp_path / "cache"
    cached(cache, lock, "nodejs18.x.debian12", npm_tarball("10.9.9"))

    folder = fetch_package_managers(target("nodejs18.x.debian12"), lock, tmp_path / "ctx", cache)

    assert folder == tmp_path / "ctx" / "package-manager"
    npm = "usr/local/lib/node_modules/npm"
    assert tree(folder) == {
        "usr/local/bin/npm": "-> ../lib/node_modules/npm/bin/npm-cli.js",
        "usr/local/bin/npx": "-> ../lib/node_modules/npm/bin/npx-cli.js",
        f"{npm}/bin/npm-cli.js": "0o755",
        f"{npm}/bin/npx-cli.js": "0o755",
        f"{npm}/lib/cli.js": "0o644",
        f"{npm}/node_modules/abbrev/package.json": "0o644",
        f"{npm}/package.json": "0o644",
    }


def pip_wheel(comment: str = "") -> bytes:
    """A wheel shaped like pip's: one package, two console scripts (``comment``: a line added
    to its ``__init__.py``, for another wheel of the same name)."""
    info = "pip-26.3.dist-info"
    files = {
        "pip/__init__.py": "__version__ = '26.3'\n" + comment,
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: pip\nVersion: 26.3\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": "[console_scripts]\npip = pip._internal.cli.main:cli\n"
        "pip3 = pip._internal.cli.main:cli\n",
    }
    record = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for name, text in files.items():
            data = text.encode()
            wheel.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        wheel.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
    return buffer.getvalue()


def test_pip_is_installed_for_the_images_interpreter_where_pip_install_installs(
    tmp_path: Path,
) -> None:
    lock, cache = Lock(path=tmp_path / "runtimes.lock.json"), tmp_path / "cache"
    cached(cache, lock, "python3.13.debian13", pip_wheel())

    folder = fetch_package_managers(target("python3.13.debian13"), lock, tmp_path / "ctx", cache)

    assert folder is not None
    site = "usr/local/lib/python3.13/dist-packages"
    info = f"{site}/pip-26.3.dist-info"
    assert tree(folder) == {
        f"{info}/INSTALLER": "0o644",
        f"{info}/METADATA": "0o644",
        f"{info}/RECORD": "0o644",
        f"{info}/WHEEL": "0o644",
        f"{info}/entry_points.txt": "0o644",
        f"{site}/pip/__init__.py": "0o644",
        "usr/local/bin/pip": "0o755",
        "usr/local/bin/pip3": "0o755",
    }
    script = (folder / "usr/local/bin/pip3").read_text()
    assert script.splitlines()[0] == "#!/usr/bin/python3.13"
    assert "from pip._internal.cli.main import cli" in script
    assert (folder / info / "INSTALLER").read_text() == "lambda-images\n"
    # The RECORD names the scripts too, so that `pip install --upgrade pip` removes them.
    record = (folder / info / "RECORD").read_text()
    assert "../../../bin/pip3,sha256=" in record


def test_a_row_without_a_package_manager_gets_no_folder(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    (context / "package-manager").mkdir(parents=True)  # left by an earlier render
    lock = Lock(path=tmp_path / "runtimes.lock.json")
    assert fetch_package_managers(target("provided.debian12"), lock, context, tmp_path) is None
    assert not (context / "package-manager").exists()


EXCLUDE = (
    "RUN echo 'path-exclude=/usr/lib/python3*/EXTERNALLY-MANAGED' > /etc/dpkg/dpkg.cfg.d/lambda-pip"
)


def test_the_debian_python_rows_copy_pip_and_never_unpack_the_externally_managed_marker() -> None:
    for runtime_id in ("python3.11.debian12", "python3.13.debian13"):
        lines = render_target(target(runtime_id)).dockerfile.splitlines()
        # The exclusion is in place before python3 is installed, and pip comes in one COPY.
        assert lines.index(EXCLUDE) < next(
            i for i, line in enumerate(lines) if "apt-get install" in line
        )
        assert lines.count("COPY package-manager/ /") == 1
    # Rows whose Python comes with its own pip (Amazon Linux, /var/lang) get neither.
    amazon = render_target(target("python3.12")).dockerfile.splitlines()
    assert EXCLUDE not in amazon and "COPY package-manager/ /" not in amazon


def test_the_package_manager_is_not_staged_by_the_inputs_stage() -> None:
    """Its file is not unpacked (nor named) by the Dockerfile's inputs stage: the context's
    package-manager/ folder is the only way it enters the image."""
    for runtime_id, filename in (
        ("nodejs20.x.debian13", "npm-11.21.3.tgz"),
        ("python3.11.debian12", "pip-26.3-py3-none-any.whl"),
    ):
        (item,) = dict(MATRIX.runtime(runtime_id).inputs)["package_manager"]
        assert item.filename("arm64") == filename
        dockerfile = render_target(target(runtime_id)).dockerfile
        start = dockerfile.index(" AS inputs\n")
        inputs_stage = dockerfile[start : dockerfile.index("\nFROM ", start)]
        assert "sha256sum -c SHA256SUMS" in inputs_stage
        assert filename not in inputs_stage and "/usr/local/lib" not in inputs_stage


def test_an_untouched_tree_is_kept_and_a_touched_or_repinned_one_laid_out_again(
    tmp_path: Path,
) -> None:
    """A no-op rebuild does not lay pip out again (a thousand files for the real wheel), but a
    tree someone edited, or a new pin, is made anew."""
    lock, cache = Lock(path=tmp_path / "runtimes.lock.json"), tmp_path / "cache"
    cached(cache, lock, "python3.13.debian13", pip_wheel())
    context = tmp_path / "ctx"
    pip3 = "usr/local/bin/pip3"

    def made() -> Path:
        folder = fetch_package_managers(target("python3.13.debian13"), lock, context, cache)
        assert folder is not None
        return folder

    # A file written anew has a new change time (whatever inode it reuses); a kept one not.
    first = (made() / pip3).stat().st_ctime_ns
    assert (made() / pip3).stat().st_ctime_ns == first  # kept

    (context / "package-manager" / pip3).write_text("#!/bin/sh\n")  # edited by hand
    edited = (context / "package-manager" / pip3).stat().st_ctime_ns
    again = made() / pip3
    assert again.read_text().splitlines()[0] == "#!/usr/bin/python3.13"
    assert again.stat().st_ctime_ns != edited

    cached(cache, lock, "python3.13.debian13", pip_wheel("# rebuilt\n"))  # another pin
    init = made() / "usr/local/lib/python3.13/dist-packages/pip/__init__.py"
    assert init.read_text() == "__version__ = '26.3'\n# rebuilt\n"
