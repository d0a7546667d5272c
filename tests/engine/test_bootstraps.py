"""The runtimes' bootstraps behave as AWS's do where a function can tell (issue 13): the
execution environment's name, the exec wrapper, layer paths, task-root .pth files and Node.js's
flags; and the emulator's --env, --env-file, --layer and --function-name reach the function.

Every test invokes the debian12 images the build phase made, on both
architectures, through `lambda-images invoke` as a user would."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import tempfile
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cli_runner import command
from conftest import BuiltImages

ARCHES = ["x86_64", "arm64"]
PYTHON = "python3.11.debian12"
NODE = "nodejs18.x.debian12"
PROVIDED = "provided.debian12"
pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.cells(PYTHON, NODE, PROVIDED)]

PYTHON_APP = """
import http.client, os, sys


def env(event, context):
    return {
        "execution_env": os.environ.get("AWS_EXECUTION_ENV"),
        "marker": os.environ.get("WRAPPED_BY"),
        "variables": {k: os.environ.get(k) for k in event.get("variables", [])},
        "function_name": context.function_name,
        "arn": context.invoked_function_arn,
    }


def layers(event, context):
    import mylib, sitelib
    return {"mylib": mylib.WHERE, "sitelib": sitelib.WHERE, "path": sys.path}


def pth(event, context):
    import vendored
    return vendored.WHERE
"""

NODE_APP = """
const http = require('http');

exports.env = async (event) => ({
  execution_env: process.env.AWS_EXECUTION_ENV || null,
  marker: process.env.WRAPPED_BY || null,
});

exports.flags = async () => ({
  exec_argv: process.execArgv,
  gc: typeof global.gc,
  max_header_size: http.maxHeaderSize,
});

exports.layers = async () => ({
  mylib: require('mylib').where,
  versioned: require('versioned').where,
});
"""

# A custom runtime that answers each event with the variable the runtime would have set.
PROVIDED_BOOTSTRAP = r"""#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  curl -sS -D /tmp/headers -o /dev/null "$API/invocation/next"
  ID="$(grep -i '^Lambda-Runtime-Aws-Request-Id:' /tmp/headers | cut -d' ' -f2 | tr -d '\r')"
  printf '{"execution_env": "%s"}' "${AWS_EXECUTION_ENV-unset}" |
    curl -sS -X POST "$API/invocation/$ID/response" --data-binary @- >/dev/null
done
"""

# A wrapper script as Lambda documents them: change the environment, then run the command line.
WRAPPER = """#!/bin/sh
export WRAPPED_BY="wrapper: $*"
exec "$@"
"""


def tree(root: Path, files: dict[str, str], executable: tuple[str, ...] = ()) -> Path:
    """Files under ``root``, readable by Lambda's non-root user (pytest's tmp dirs are 0700)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        path.chmod(0o755 if name in executable else 0o644)
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)
    return root


def invoke(image: str, *args: str, event: Any = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command("invoke", image, "--timeout", "120", "--event", json.dumps(event or {}), *args),
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def answer(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def python_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tree(
        tmp_path_factory.mktemp("py") / "code",
        {"app.py": PYTHON_APP, "wrapper": WRAPPER, "not-executable": WRAPPER},
        executable=("wrapper",),
    )


@pytest.fixture(scope="module")
def node_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tree(
        tmp_path_factory.mktemp("js") / "code",
        {"app.js": NODE_APP, "wrapper": WRAPPER, "not-executable": WRAPPER},
        executable=("wrapper",),
    )


# --- 13.1: AWS_EXECUTION_ENV ----------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize(
    ("runtime_id", "expected"),
    [
        (PYTHON, "AWS_Lambda_python3.11"),
        (NODE, "AWS_Lambda_nodejs18.x"),
        # Lambda leaves it undefined for OS-only runtimes (the provided family):
        # https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html
        (PROVIDED, "unset"),
    ],
)
def test_function_sees_the_execution_environment_aws_names(
    runtime_id: str,
    expected: str,
    arch: str,
    built: BuiltImages,
    python_code: Path,
    node_code: Path,
    tmp_path: Path,
) -> None:
    image = built(runtime_id)[arch].image_tag
    if runtime_id == PROVIDED:
        code = tree(tmp_path / "code", {"bootstrap": PROVIDED_BOOTSTRAP}, executable=("bootstrap",))
    else:
        code = python_code if runtime_id == PYTHON else node_code
    result = answer(invoke(image, "--handler", "app.env", "--code", str(code)))
    assert result["execution_env"] == expected


# --- 13.2: AWS_LAMBDA_EXEC_WRAPPER ----------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize(
    ("runtime_id", "command_line"),
    [
        (PYTHON, "wrapper: /usr/bin/python3.11 /var/runtime/bootstrap.py"),
        (NODE, "wrapper: /usr/bin/node --expose-gc --max-http-header-size 81920"),
    ],
)
def test_exec_wrapper_runs_first_with_the_runtimes_command_line(
    runtime_id: str,
    command_line: str,
    arch: str,
    built: BuiltImages,
    python_code: Path,
    node_code: Path,
) -> None:
    image = built(runtime_id)[arch].image_tag
    code = python_code if runtime_id == PYTHON else node_code
    result = answer(
        invoke(
            image, "--handler", "app.env", "--code", str(code),
            "--env", "AWS_LAMBDA_EXEC_WRAPPER=/var/task/wrapper",
        )
    )  # fmt: skip
    assert result["marker"].startswith(command_line)
    # The wrapper ran the bootstrap's runtime, which still names itself.
    assert result["execution_env"].startswith("AWS_Lambda_")


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("runtime_id", [PYTHON, NODE])
@pytest.mark.parametrize(
    ("wrapper", "status", "says"),
    [
        ("/var/task/missing", 127, "AWS_LAMBDA_EXEC_WRAPPER=/var/task/missing: no such file"),
        ("/var/task/not-executable", 126, "/var/task/not-executable: not executable"),
    ],
)
def test_unusable_exec_wrapper_ends_init_with_its_exit_status(
    wrapper: str,
    status: int,
    says: str,
    runtime_id: str,
    arch: str,
    built: BuiltImages,
    python_code: Path,
    node_code: Path,
) -> None:
    image = built(runtime_id)[arch].image_tag
    code = python_code if runtime_id == PYTHON else node_code
    result = invoke(
        image, "--handler", "app.env", "--code", str(code),
        "--env", f"AWS_LAMBDA_EXEC_WRAPPER={wrapper}",
    )  # fmt: skip
    assert result.returncode == 9, result.stderr[-3000:]
    error = json.loads(result.stdout)
    assert set(error) == {"errorMessage", "errorType"}
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"].endswith(f"Runtime exited with error: exit status {status}")
    assert says in result.stderr


# --- 13.3: layers and .pth files ------------------------------------------------------------------


@pytest.fixture(scope="module")
def python_layers(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("py-layers")
    first = tree(
        root / "first",
        {
            "python/mylib/__init__.py": "WHERE = 'first layer'\n",
            "python/lib/python3.11/site-packages/sitelib/__init__.py": "WHERE = 'first layer'\n",
        },
    )
    # A later layer replaces an earlier layer's file, as Lambda extracts them in order.
    second = tree(
        root / "second",
        {"python/lib/python3.11/site-packages/sitelib/__init__.py": "WHERE = 'second layer'\n"},
    )
    return [first, second]


@pytest.mark.parametrize("arch", ARCHES)
def test_python_imports_from_layers_in_lambdas_order(
    arch: str, built: BuiltImages, python_code: Path, python_layers: list[Path]
) -> None:
    image = built(PYTHON)[arch].image_tag
    layer_args = [arg for layer in python_layers for arg in ("--layer", str(layer))]
    result = answer(
        invoke(image, "--handler", "app.layers", "--code", str(python_code), *layer_args)
    )
    assert result["mylib"] == "first layer"
    assert result["sitelib"] == "second layer"
    opt = ["/opt/python/lib/python3.11/site-packages", "/opt/python"]
    assert [p for p in result["path"] if p in ("/var/task", *opt)] == ["/var/task", *opt]


@pytest.mark.parametrize("arch", ARCHES)
def test_pth_file_in_the_task_root_takes_effect(
    arch: str, built: BuiltImages, tmp_path: Path
) -> None:
    image = built(PYTHON)[arch].image_tag
    code = tree(
        tmp_path / "code",
        {
            "app.py": PYTHON_APP,
            "vendor.pth": "/var/task/vendor\n",
            "vendor/vendored/__init__.py": "WHERE = 'vendor folder named by vendor.pth'\n",
        },
    )
    result = answer(invoke(image, "--handler", "app.pth", "--code", str(code)))
    assert result == "vendor folder named by vendor.pth"


@pytest.mark.parametrize("arch", ARCHES)
def test_node_requires_from_layers(
    arch: str, built: BuiltImages, node_code: Path, tmp_path: Path
) -> None:
    image = built(NODE)[arch].image_tag
    layer = tree(
        tmp_path / "layer",
        {
            "nodejs/node_modules/mylib/index.js": "exports.where = 'any Node.js version';\n",
            "nodejs/node18/node_modules/versioned/index.js": "exports.where = 'node18 only';\n",
        },
    )
    result = answer(
        invoke(image, "--handler", "app.layers", "--code", str(node_code), "--layer", str(layer))
    )
    assert result == {"mylib": "any Node.js version", "versioned": "node18 only"}


ESM_APP = """
import { S3Client } from '@aws-sdk/client-s3';
import { where } from 'mylib';

export const handler = async () => {
  let missing = null;
  try {
    await import('not-installed-anywhere');
  } catch (error) {
    missing = error.code;
  }
  return { s3: typeof S3Client, mylib: where, missing };
};
"""


@pytest.mark.cells(NODE, "nodejs20.x.debian13")
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("runtime_id", [NODE, "nodejs20.x.debian13"])
def test_an_es_module_handler_imports_the_sdk_and_layers_through_node_path(
    runtime_id: str, arch: str, built: BuiltImages, tmp_path: Path
) -> None:
    """`import` (not only `require`) finds packages in NODE_PATH, as on AWS's Node.js 18+
    runtimes: the SDK in /var/runtime/node_modules and a layer's /opt/nodejs/node_modules; a
    package that is nowhere still fails as Node.js says."""
    image = built(runtime_id)[arch].image_tag
    code = tree(tmp_path / "code", {"app.mjs": ESM_APP})
    layer = tree(
        tmp_path / "layer", {"nodejs/node_modules/mylib/index.js": "exports.where = 'a layer';\n"}
    )
    result = answer(
        invoke(image, "--handler", "app.handler", "--code", str(code), "--layer", str(layer))
    )
    assert result == {"s3": "function", "mylib": "a layer", "missing": "ERR_MODULE_NOT_FOUND"}


# --- Node.js flags --------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_node_starts_with_awss_flags_and_a_heap_sized_from_memory(
    arch: str, built: BuiltImages, node_code: Path
) -> None:
    image = built(NODE)[arch].image_tag
    result = answer(
        invoke(image, "--handler", "app.flags", "--code", str(node_code), "--memory", "512")
    )
    # 512 MB: a tenth (51) for the young generation, 25 per semi-space, 461 for the old one.
    assert result["exec_argv"] == [
        "--expose-gc",
        "--max-http-header-size",
        "81920",
        "--max-semi-space-size=25",
        "--max-old-space-size=461",
        "--import",
        "file:///var/runtime/esm-register.mjs",
    ]
    assert result["gc"] == "function"
    assert result["max_header_size"] == 81920


# --- the emulator's options -----------------------------------------------------------------------


def test_env_env_file_and_function_name_reach_the_function(
    built: BuiltImages, python_code: Path, tmp_path: Path
) -> None:
    image = built(PYTHON)["x86_64"].image_tag
    env_file = tmp_path / "function.env"
    env_file.write_text("# the function's settings\nTABLE=orders\nSTAGE=from-file\n\nPASSED\n")
    result = subprocess.run(
        command("invoke", image, "--handler", "app.env", "--code", str(python_code),
         "--env-file", str(env_file), "--env", "STAGE=from-the-command-line",
         "--env", "DSN=postgres://db/app?sslmode=require&x=1", "--function-name", "orders-api",
         "--event", json.dumps({"variables": ["TABLE", "STAGE", "DSN", "PASSED"]})),
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PASSED": "from the shell"},
    )  # fmt: skip
    result_json = answer(result)
    assert result_json["variables"] == {
        "TABLE": "orders",
        "STAGE": "from-the-command-line",
        "DSN": "postgres://db/app?sslmode=require&x=1",
        "PASSED": "from the shell",
    }
    assert result_json["function_name"] == "orders-api"
    assert result_json["arn"] == "arn:aws:lambda:us-east-1:012345678912:function:orders-api"


def test_serve_takes_the_same_function_options(
    built: BuiltImages, python_code: Path, python_layers: list[Path]
) -> None:
    image = built(PYTHON)["x86_64"].image_tag
    server = subprocess.Popen(
        command("serve", image, "--handler", "app.env", "--code", str(python_code), "--port", "0",
         "--env", "TABLE=orders", "--function-name", "served", "--layer", str(python_layers[0])),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        body = json.dumps({"variables": ["TABLE"]}).encode()
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=300) as reply:
            result = json.loads(reply.read())
        assert result["variables"] == {"TABLE": "orders"}
        assert result["function_name"] == "served"
        # The layers stay merged for the server's life, and go with it.
        opt_dirs = [Path(d) for d in glob.glob(f"{tempfile.gettempdir()}/lambda-images-opt-*")]
        assert any((d / "python" / "mylib" / "__init__.py").is_file() for d in opt_dirs)
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=120)
    assert server.returncode == 0, stderr
    assert not [d for d in opt_dirs if d.exists()]
