"""Named npm sets (runtimes.yaml `npm_sets`): what a runtime's install gets from them, and what
of their packages reaches the image."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from conftest import REPO

from pipeline.inputs import fetch_npm
from pipeline.lock import Lock, LockedPackage
from pipeline.matrix import load_matrix

GOOD = (REPO / "runtimes.yaml").read_text()


def test_a_node_row_installs_its_own_packages_then_every_client_of_the_sdk_set() -> None:
    matrix = load_matrix(REPO / "runtimes.yaml")
    npm = matrix.runtime("nodejs20.x.debian13").install.npm
    assert npm[0] == "aws-lambda-ric@3.3.0"
    clients = [spec for spec in npm if spec.startswith("@aws-sdk/client-")]
    assert len(clients) == len(npm) - 1 > 250
    assert {"@aws-sdk/client-s3", "@aws-sdk/client-dynamodb", "@aws-sdk/client-lambda"} <= set(npm)
    # Every Node.js 18+ row takes the same set, after its own client (4.x from Node.js 22 on).
    for rt_id in ("nodejs18.x.debian12", "nodejs22.x", "nodejs24.x"):
        own, *sdk = matrix.runtime(rt_id).install.npm
        assert (own.split("@")[0], sdk) == ("aws-lambda-ric", list(npm[1:]))
    assert [matrix.runtime(r).install.npm[0] for r in ("nodejs18.x.debian12", "nodejs22.x")] == [
        "aws-lambda-ric@3.3.0", "aws-lambda-ric@4.0.2"
    ]  # fmt: skip


def test_a_package_the_row_names_itself_keeps_the_rows_version(tmp_path: Path) -> None:
    own = "      npm: [aws-lambda-ric@3.3.0]\n"
    pinned = '      npm: [aws-lambda-ric@3.3.0, "@aws-sdk/client-s3@3.716.0"]\n'
    row = "  - id: nodejs18.x.debian12\n"
    start = GOOD.index(row)
    text = GOOD[:start] + GOOD[start:].replace(own, pinned, 1)
    (tmp_path / "runtimes.yaml").write_text(text)
    (tmp_path / "templates").symlink_to(REPO / "templates")
    npm = load_matrix(tmp_path / "runtimes.yaml").runtime("nodejs18.x.debian12").install.npm
    assert npm[:2] == ("aws-lambda-ric@3.3.0", "@aws-sdk/client-s3@3.716.0")
    assert [spec for spec in npm if spec.startswith("@aws-sdk/client-s3@")] == [npm[1]]
    assert "@aws-sdk/client-s3" not in npm
    assert "@aws-sdk/client-dynamodb" in npm


def _npm_tarball(files: dict[str, str]) -> bytes:
    """An npm registry tarball: every file below the one top folder `package/`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_the_image_gets_the_sdks_commonjs_build_and_not_what_only_bundlers_read(
    tmp_path: Path,
) -> None:
    """dist-types and dist-es are never unpacked for a package whose `main` is in dist-cjs and
    that has no `exports` map, nor node-gyp's test fixtures; other packages keep every file."""
    packages = {
        "node_modules/@aws-sdk/client-fake": {
            "package.json": json.dumps({
                "name": "@aws-sdk/client-fake", "main": "./dist-cjs/index.js",
                "module": "./dist-es/index.js", "types": "./dist-types/index.d.ts",
            }),
            "dist-cjs/index.js": "exports.FakeClient = class {};\n",
            "dist-es/index.js": "export class FakeClient {}\n",
            "dist-types/index.d.ts": "export declare class FakeClient {}\n",
        },
        "node_modules/@smithy/mapped": {
            "package.json": json.dumps({"name": "@smithy/mapped", "main": "./dist-cjs/index.js",
                                        "exports": {".": {"import": "./dist-es/index.js",
                                                          "require": "./dist-cjs/index.js"}}}),
            "dist-cjs/index.js": "module.exports = 1;\n",
            "dist-es/index.js": "export default 1;\n",
        },
        "node_modules/plain": {
            "package.json": json.dumps({"name": "plain", "main": "lib/index.js"}),
            "lib/index.js": "module.exports = 2;\n",
            "dist-types/notes.d.ts": "export {};\n",
        },
        "node_modules/node-gyp": {
            "package.json": json.dumps({"name": "node-gyp", "main": "./lib/node-gyp.js"}),
            "lib/node-gyp.js": "module.exports = {};\n",
            "test/fixtures/server.key": "-----BEGIN PRIVATE KEY-----\n",
        },
    }  # fmt: skip
    cache = tmp_path / "cache"
    cache.mkdir()
    locked = []
    for path, files in packages.items():
        data = _npm_tarball(files)
        sha256 = hashlib.sha256(data).hexdigest()
        (cache / sha256).write_bytes(data)  # as `lambda-images lock` left it: no network needed
        locked.append(
            LockedPackage(path=path, url=f"https://registry.invalid/{sha256}.tgz", sha256=sha256)
        )
    matrix = load_matrix(REPO / "runtimes.yaml")
    target = matrix.targets([matrix.runtime("nodejs20.x.debian13")], ["x86_64"])[0]
    lock = Lock(path=tmp_path / "runtimes.lock.json", npm={"nodejs20.x.debian13": locked})
    context = tmp_path / "context"
    context.mkdir()

    fetch_npm(target, lock, context, cache)

    image = context / "node_modules"  # the image's tree, and the addon's build stage's
    client = image / "@aws-sdk/client-fake"
    assert sorted(p.name for p in client.iterdir()) == ["dist-cjs", "package.json"]
    assert sorted(p.name for p in (image / "@smithy/mapped").iterdir()) == [
        "dist-cjs",
        "dist-es",
        "package.json",
    ]
    assert (image / "plain/dist-types/notes.d.ts").is_file()
    assert sorted(p.name for p in (image / "node-gyp").iterdir()) == ["lib", "package.json"]
    assert [p.name for p in context.iterdir()] == ["node_modules"]
