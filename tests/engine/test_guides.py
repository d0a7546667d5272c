"""AWS's "deploy … Lambda functions with container images" guides, with only the `FROM` line
changed to ours (issue 24): a function image written the way each guide writes it builds on
the build phase's image and answers through `docker run -p …:8080` and an HTTP POST to the
invoke URL, as the guide's "test locally" step does (the RIE inside the image serves it).

- Python: `COPY requirements.txt ${LAMBDA_TASK_ROOT}`, `RUN pip install -r requirements.txt`
  (into the interpreter's site folder, which the runtime imports from) and `RUN pip3 install
  -r … --target "${LAMBDA_TASK_ROOT}"`, `CMD [ "lambda_function.handler" ]`;
- Node.js: `COPY index.js package.json ${LAMBDA_TASK_ROOT}`, `RUN npm install`,
  `CMD [ "index.handler" ]`;
- Java: `COPY target/classes ${LAMBDA_TASK_ROOT}`, `COPY target/dependency/*
  ${LAMBDA_TASK_ROOT}/lib/`, `CMD [ "example.App::handleRequest" ]`;
- Go on an OS-only image: `COPY main ./main`, `ENTRYPOINT [ "./main" ]`, run locally with the
  RIE as the entrypoint (`--entrypoint /usr/local/bin/aws-lambda-rie IMAGE ./main`); and a
  function deployed as `bootstrap`, in the task root (go) or in `${LAMBDA_RUNTIME_DIR}`
  (a custom runtime on provided).

Each function has a dependency made here from a local file (a wheel, a `file:` npm package, a
jar, the aws-lambda-go module from the host's module cache), and each function image is built
with no network at all (`--network none`): nothing in it needs the internet. The function says
where its dependency was loaded from, and the package manager's version is the one pinned in
runtimes.yaml.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BuiltImages
from rie_http import LABEL, invoke_through_port

from pipeline import gotool
from pipeline.inputs import download
from pipeline.lock import Lock
from pipeline.matrix import ARCHES, Matrix, Runtime, load_matrix
from pipeline.probes import copy_readable, go_toolchain
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[2]
MATRIX = load_matrix(REPO / "runtimes.yaml")
DEBIAN = ("debian12", "debian13")
RIE = "/usr/local/bin/aws-lambda-rie"
RUN_LABEL = "guides"


def rows(family: str) -> list[Runtime]:
    return [rt for rt in MATRIX.runtimes if rt.family.id == family and rt.os.id in DEBIAN]


def cells(family: str, arches: tuple[str, ...] = ("x86_64", "arm64")) -> list[Any]:
    """One parameter per Debian row of ``family`` and architecture, each naming its cell."""
    return [
        pytest.param(rt.id, arch, marks=pytest.mark.cells(f"{rt.id}/{arch}"), id=f"{rt.id}/{arch}")
        for rt in rows(family)
        for arch in rt.architectures
        if arch in arches
    ]


pytestmark = [pytest.mark.engine, pytest.mark.slow]


@pytest.fixture
def function_image(engine: Any, cleanup_images: list[str]) -> Iterator[Any]:
    """``function_image(folder, name)``: `docker build --network none -t NAME FOLDER`, the way
    a user builds the guide's image; removed after the test."""

    def build(folder: Path, name: str) -> str:
        tag = f"lambda-images-guide/{name}"
        cleanup_images.append(tag)
        try:
            engine.images.build(
                path=str(folder), tag=tag, rm=True, forcerm=True, pull=False, network_mode="none"
            )
        except Exception as exc:  # docker.errors.BuildError carries the build log
            log = "".join(str(c.get("stream", "")) for c in getattr(exc, "build_log", []))
            pytest.fail(f"the guide's image did not build: {exc}\n{log[-3000:]}")
        return tag

    yield build


def write(folder: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return copy_readable(folder, folder)


def in_image(engine: Any, image: str, *argv: str) -> str:
    """What ``argv`` prints in a container of ``image`` (its entrypoint replaced)."""
    output: bytes = engine.containers.run(
        image, command=list(argv[1:]), entrypoint=[argv[0]], remove=True,
        labels={LABEL: RUN_LABEL},
    )  # fmt: skip
    return output.decode().strip()


def package_manager_version(runtime: Runtime) -> str:
    (item,) = dict(runtime.inputs)["package_manager"]
    return item.version


# --- Python -------------------------------------------------------------------------------------


def wheel(folder: Path, name: str, version: str, source: str) -> str:
    """A pure-Python wheel of one module package, written as a build backend writes one."""
    filename = f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": source,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(folder / filename, "w") as archive:
        for path, text in files.items():
            data = text.encode()
            archive.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(data)}")
        record.append(f"{info}/RECORD,,")
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return filename


PYTHON_HANDLER = """\
import greeting
import salutation


def handler(event, context):
    return {
        "message": greeting.hello(event["name"]),
        "greeting": greeting.__file__,
        "salutation": salutation.__file__,
    }
"""


@pytest.mark.parametrize(("runtime_id", "arch"), cells("python"))
def test_python_guide_pip_install_then_docker_run_answers(
    engine: Any, built: BuiltImages, function_image: Any, tmp_path: Path,
    runtime_id: str, arch: str,
) -> None:  # fmt: skip
    target = built(runtime_id)[arch]
    version = target.runtime.version
    greeting = wheel(
        tmp_path, "greeting", "1.0", "def hello(name):\n    return f'Hello, {name}!'\n"
    )
    salutation = wheel(tmp_path, "salutation", "2.0", "")
    write(tmp_path, {
        "requirements.txt": f"./{greeting}\n",
        "task-requirements.txt": f"./{salutation}\n",
        "lambda_function.py": PYTHON_HANDLER,
        "Dockerfile": f"FROM {target.image_tag}\n"
        f"COPY requirements.txt {greeting} ${{LAMBDA_TASK_ROOT}}/\n"
        "RUN pip install -r requirements.txt\n"
        f"COPY task-requirements.txt {salutation} ${{LAMBDA_TASK_ROOT}}/\n"
        'RUN pip3 install -r task-requirements.txt --target "${LAMBDA_TASK_ROOT}"\n'
        "COPY lambda_function.py ${LAMBDA_TASK_ROOT}\n"
        'CMD [ "lambda_function.handler" ]\n',
    })  # fmt: skip
    image = function_image(tmp_path, f"python-{runtime_id}:{arch}")

    answer, logs = invoke_through_port(engine, image, {"name": arch}, label=RUN_LABEL)

    site = f"/usr/local/lib/python{version}/dist-packages"
    assert answer == {
        "message": f"Hello, {arch}!",
        "greeting": f"{site}/greeting/__init__.py",  # plain `pip install`: the site folder
        "salutation": "/var/task/salutation/__init__.py",  # --target: the task root
    }, logs
    pip = package_manager_version(target.runtime)
    assert in_image(engine, image, "pip", "--version") == (
        f"pip {pip} from {site}/pip (python {version})"
    )


# --- Node.js ------------------------------------------------------------------------------------


def npm_package(folder: Path, name: str, version: str, source: str) -> str:
    """A `file:` dependency as `npm pack` writes it: package/package.json and its module."""
    filename = f"{name}-{version}.tgz"
    manifest = json.dumps({"name": name, "version": version, "main": "index.js"})
    with tarfile.open(folder / filename, "w:gz") as archive:
        for path, text in (("package/package.json", manifest), ("package/index.js", source)):
            data = text.encode()
            member = tarfile.TarInfo(path)
            member.size, member.mode = len(data), 0o644
            archive.addfile(member, io.BytesIO(data))
    return filename


NODE_HANDLER = """\
const greeting = require("greeting");

exports.handler = async (event) => ({
  message: greeting.hello(event.name),
  greeting: require.resolve("greeting"),
});
"""


@pytest.mark.parametrize(("runtime_id", "arch"), cells("nodejs"))
def test_nodejs_guide_npm_install_then_docker_run_answers(
    engine: Any, built: BuiltImages, function_image: Any, tmp_path: Path,
    runtime_id: str, arch: str,
) -> None:  # fmt: skip
    target = built(runtime_id)[arch]
    greeting = npm_package(
        tmp_path, "greeting", "1.0.0", "exports.hello = (name) => `Hello, ${name}!`;\n"
    )
    manifest = {
        "name": "function",
        "version": "1.0.0",
        "dependencies": {"greeting": f"file:{greeting}"},
    }
    write(tmp_path, {
        "package.json": json.dumps(manifest),
        "index.js": NODE_HANDLER,
        "Dockerfile": f"FROM {target.image_tag}\n"
        f"COPY index.js package.json {greeting} ${{LAMBDA_TASK_ROOT}}/\n"
        "RUN npm install\n"
        'CMD [ "index.handler" ]\n',
    })  # fmt: skip
    image = function_image(tmp_path, f"nodejs-{runtime_id}:{arch}")

    answer, logs = invoke_through_port(engine, image, {"name": arch}, label=RUN_LABEL)

    assert answer == {
        "message": f"Hello, {arch}!",
        "greeting": "/var/task/node_modules/greeting/index.js",
    }, logs
    npm = package_manager_version(target.runtime)
    assert in_image(engine, image, "npm", "--version") == npm
    assert in_image(engine, image, "npx", "--version") == npm


# --- Java ---------------------------------------------------------------------------------------


GREETER = """\
package greeting;

public final class Greeter {
    private Greeter() {}

    public static String hello(String name) {
        return "Hello, " + name + "!";
    }
}
"""

JAVA_HANDLER = """\
package example;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import greeting.Greeter;
import java.util.Map;

public class App implements RequestHandler<Map<String, String>, Map<String, String>> {
    @Override
    public Map<String, String> handleRequest(Map<String, String> event, Context context) {
        return Map.of(
            "message", Greeter.hello(event.get("name")),
            "greeter", Greeter.class.getProtectionDomain().getCodeSource().getLocation().getPath(),
            "handler", App.class.getProtectionDomain().getCodeSource().getLocation().getPath());
    }
}
"""


def javac(*argv: str, cwd: Path) -> None:
    compiler = shutil.which("javac")
    assert compiler, "the Java guide's function is compiled on the host: javac is needed"
    subprocess.run([compiler, "--release", "17", *argv], cwd=cwd, check=True)


def java_core_jar(matrix: Matrix, runtime: Runtime, dest: Path) -> Path:
    """The aws-lambda-java-core jar the runtime pins (the guide's one compile dependency)."""
    arch = runtime.architectures[0]
    (core,) = [i for i in runtime.all_inputs() if i.name == "java-core"]
    expected = Lock.for_matrix(matrix.path).input_sha256(
        runtime.id, arch, core.name, core.key(arch), core.filename(arch)
    )
    cached = download(core.url(arch), expected, core.name, Settings.from_environ().cache / "inputs")
    return Path(shutil.copyfile(cached, dest / core.filename(arch)))


@pytest.mark.parametrize(("runtime_id", "arch"), cells("java", ("x86_64",)))
def test_java_guide_classes_and_lib_jars_then_docker_run_answers(
    engine: Any, built: BuiltImages, matrix: Matrix, function_image: Any, tmp_path: Path,
    runtime_id: str, arch: str,
) -> None:  # fmt: skip
    target = built(runtime_id)[arch]
    src = write(
        tmp_path / "src", {"greeting/Greeter.java": GREETER, "example/App.java": JAVA_HANDLER}
    )
    core = java_core_jar(matrix, target.runtime, tmp_path)
    library = tmp_path / "library"
    javac("-d", str(library), "greeting/Greeter.java", cwd=src)
    classes = tmp_path / "target" / "classes"
    javac("-cp", f"{core}:{library}", "-d", str(classes), "example/App.java", cwd=src)
    dependency = tmp_path / "target" / "dependency"
    dependency.mkdir()
    with zipfile.ZipFile(dependency / "greeting.jar", "w") as jar:
        jar.write(library / "greeting" / "Greeter.class", "greeting/Greeter.class")
    write(tmp_path, {
        "Dockerfile": f"FROM {target.image_tag}\n"
        "COPY target/classes ${LAMBDA_TASK_ROOT}\n"
        "COPY target/dependency/* ${LAMBDA_TASK_ROOT}/lib/\n"
        'CMD [ "example.App::handleRequest" ]\n',
    })  # fmt: skip
    shutil.rmtree(tmp_path / "src")
    image = function_image(tmp_path, f"java-{runtime_id}:{arch}")

    answer, logs = invoke_through_port(engine, image, {"name": arch}, label=RUN_LABEL)

    assert answer == {
        "message": f"Hello, {arch}!",
        "greeter": "/var/task/lib/greeting.jar",
        "handler": "/var/task/",
    }, logs


# --- Go and custom runtimes ---------------------------------------------------------------------


GO_HANDLER = """\
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	Name string `json:"name"`
}

func handle(ctx context.Context, e event) (map[string]string, error) {
	return map[string]string{"message": "Hello, " + e.Name + "!", "executable": os.Args[0]}, nil
}

func main() {
	lambda.Start(handle)
}
"""


def go_function(runtime: Runtime, arch: str, dest: Path, name: str) -> Path:
    """A function built with aws-lambda-go for ``arch`` on the host, as the guide's build stage
    does, with the module the go probe requires (its go.mod and go.sum)."""
    module = write(dest / "module", {"main.go": GO_HANDLER})
    probe = REPO / "templates" / "go" / "probe"
    for name_ in ("go.mod", "go.sum"):
        shutil.copyfile(probe / name_, module / name_)
    settings = Settings.from_environ()
    env = gotool.environment(ARCHES[arch], go_toolchain(runtime), settings.environ)
    output = gotool.build(".", dest / name, env=env, cwd=module, what=f"the guide's {name}")
    shutil.rmtree(module)
    output.chmod(0o755)
    return output


GO_SHAPES = {
    # ENTRYPOINT [ "./main" ] on an OS-only image, run locally with the RIE as entrypoint.
    "main": (
        'COPY main ./main\nENTRYPOINT [ "./main" ]\n',
        {"entrypoint": [RIE], "command": ["./main"]},
        "./main",
    ),
    # The function is the custom runtime: `bootstrap` in ${LAMBDA_RUNTIME_DIR}.
    "runtime-bootstrap": (
        'COPY bootstrap ${LAMBDA_RUNTIME_DIR}\nCMD [ "function.handler" ]\n',
        {},
        "/var/runtime/bootstrap",
    ),
    # A Go function deployed as `bootstrap` in the task root, as on AWS's OS-only runtimes.
    "task-bootstrap": (
        'COPY bootstrap ${LAMBDA_TASK_ROOT}/\nCMD [ "bootstrap" ]\n',
        {},
        "/var/task/bootstrap",
    ),
}
GO_CASES = [
    pytest.param(
        rt, arch, shape, marks=pytest.mark.cells(f"{rt}/{arch}"), id=f"{rt}/{arch}/{shape}"
    )
    for rt, shapes in (
        ("provided.debian12", ("main", "runtime-bootstrap")),
        ("go.debian12", ("task-bootstrap",)),
    )
    for arch in ("x86_64", "arm64")
    for shape in shapes
]


@pytest.mark.parametrize(("runtime_id", "arch", "shape"), GO_CASES)
def test_go_guide_function_on_an_os_only_image_answers(
    engine: Any, built: BuiltImages, function_image: Any, tmp_path: Path,
    runtime_id: str, arch: str, shape: str,
) -> None:  # fmt: skip
    target = built(runtime_id)[arch]
    instructions, run, executable = GO_SHAPES[shape]
    go_function(target.runtime, arch, tmp_path, "main" if shape == "main" else "bootstrap")
    write(tmp_path, {"Dockerfile": f"FROM {target.image_tag}\n{instructions}"})
    image = function_image(tmp_path, f"go-{runtime_id}-{shape}:{arch}")

    answer, logs = invoke_through_port(engine, image, {"name": arch}, label=RUN_LABEL, **run)

    assert answer == {"message": f"Hello, {arch}!", "executable": executable}, logs
