"""The rendered bootstraps: each managed runtime names itself as AWS names it (AWS_EXECUTION_ENV),
OS-only runtimes bring no bootstrap of their own, every bootstrap of every family passes
shellcheck as the POSIX shell script it is, the Ruby bootstrap lays out gems and libraries as
AWS's Ruby runtime does, and the .NET bootstrap, run against a task root and a stand-in
`dotnet`, starts what AWS's .NET runtime starts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.matrix import Matrix, load_matrix
from pipeline.render import RENDERED_DIR, render_target

REPO = Path(__file__).resolve().parents[2]
MATRIX = load_matrix(REPO / "runtimes.yaml")
MANAGED = [rt for rt in MATRIX.runtimes if rt.family.id in ("python", "nodejs", "ruby")]

# AWS's identifiers of its runtimes, by language version: python3.12, nodejs20.x, ruby3.3.
AWS_SCHEME = {"python": "python{}", "nodejs": "nodejs{}.x", "ruby": "ruby{}"}


def bootstrap(runtime_id: str, arch: str = "x86_64") -> str:
    target = next(t for t in MATRIX.targets([MATRIX.runtime(runtime_id)]) if t.arch.name == arch)
    return render_target(target).files["bootstrap"].data.decode()


@pytest.mark.parametrize("runtime_id", [rt.id for rt in MANAGED])
def test_bootstrap_exports_awss_execution_env(runtime_id: str) -> None:
    # A row of AWS's is named by its identifier; a Debian row by AWS's runtime of its language
    # version (python3.11.debian12 → AWS_Lambda_python3.11).
    runtime = MATRIX.runtime(runtime_id)
    aws_id = AWS_SCHEME[runtime.family.id].format(runtime.version)
    if not runtime.os.id.startswith("debian"):
        assert aws_id == runtime_id
    expected = f"AWS_Lambda_{aws_id}"
    exports = [
        line for line in bootstrap(runtime_id).splitlines() if "export AWS_EXECUTION_ENV" in line
    ]
    assert exports == [f"export AWS_EXECUTION_ENV={expected}"]


def test_os_only_runtimes_bring_no_bootstrap(matrix: Matrix) -> None:
    for runtime in matrix.runtimes:
        if runtime.family.id == "provided":
            rendered = render_target(matrix.targets([runtime])[0])
            assert "bootstrap" not in rendered.files
            assert "AWS_EXECUTION_ENV" not in rendered.dockerfile


def test_node_bootstrap_searches_layers_for_its_own_major_version() -> None:
    text = bootstrap("nodejs18.x.debian12")
    assert (
        'NODE_PATH="/opt/nodejs/node18/node_modules:/opt/nodejs/node_modules:'
        '/var/runtime/node_modules:/var/runtime:/var/task"'
    ) in text


def test_every_rendered_bootstrap_of_every_family_passes_shellcheck(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is a test dependency (scripts/setup installs it)"
    # The committed output, which test_render.py holds equal to what the templates render.
    bootstraps = {
        path.relative_to(REPO / RENDERED_DIR).as_posix(): path.read_bytes()
        for path in sorted((REPO / RENDERED_DIR).glob("*/*/bootstrap"))
    }
    expected = {
        f"{t.runtime.id}/{t.arch.name}/bootstrap"
        for t in MATRIX.targets(MATRIX.runtimes)
        if t.runtime.family.id != "provided"
    }
    assert set(bootstraps) == expected
    families = {MATRIX.runtime(name.split("/")[0]).family.id for name in bootstraps}
    assert families == {"python", "nodejs", "ruby", "java", "go", "dotnet"}
    # One file per distinct text (a runtime's arches mostly share theirs): one shellcheck run.
    paths = []
    for number, data in enumerate(sorted(set(bootstraps.values()))):
        path = tmp_path / f"bootstrap-{number}"
        path.write_bytes(data)
        paths.append(str(path))
    result = subprocess.run(
        [shellcheck, "--shell=sh", *paths], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


# --- Ruby ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("arch", "triplet"), [("x86_64", "x86_64"), ("arm64", "aarch64")])
def test_ruby_bootstrap_searches_the_function_layers_and_debians_gems(
    arch: str, triplet: str
) -> None:
    text = bootstrap("ruby3.3.debian13", arch)
    own = (
        "/var/runtime:/usr/share/rubygems-integration/all:/usr/share/rubygems-integration/3.3.0:"
        f"/usr/lib/{triplet}-linux-gnu/rubygems-integration/3.3.0:/usr/lib/ruby/gems/3.3.0:"
        f"/usr/lib/{triplet}-linux-gnu/ruby/gems/3.3.0:/var/lib/gems/3.3.0"
    )
    assert f'export GEM_PATH="$task/vendor/bundle/ruby/3.3.0:/opt/ruby/gems/3.3.0:{own}"' in text
    assert 'export RUBYLIB="$task:/var/runtime/lib:/opt/ruby/lib"' in text
    assert 'set -- /usr/bin/ruby3.3 /var/runtime/lib/runtime_client.rb "$_HANDLER"' in text


def test_amazon_linux_ruby_rows_keep_awss_client_gem_with_the_same_layout() -> None:
    text = bootstrap("ruby3.4")
    own = "/var/runtime:/var/lang/lib/ruby/gems/3.4.0"
    assert f'export GEM_PATH="$task/vendor/bundle/ruby/3.4.0:/opt/ruby/gems/3.4.0:{own}"' in text
    assert 'export RUBYLIB="$task:/var/runtime/lib:/opt/ruby/lib"' in text
    assert 'set -- /var/lang/bin/ruby /var/runtime/bin/aws_lambda_ric "$_HANDLER"' in text


def run_sh(
    script: str, env: dict[str, str], *args: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    path = cwd / "bootstrap"
    path.write_text(script)
    return subprocess.run(
        ["sh", str(path), *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_ruby_bootstrap_keeps_the_functions_own_gem_path_and_adds_to_its_rubylib(
    tmp_path: Path,
) -> None:
    text = bootstrap("ruby3.3.debian13")
    # The runtime's command line replaced by one that prints what it was given.
    text = text.replace(
        'set -- /usr/bin/ruby3.3 /var/runtime/lib/runtime_client.rb "$_HANDLER"',
        "set -- sh -c 'echo \"$GEM_HOME|$GEM_PATH|$RUBYLIB|$AWS_EXECUTION_ENV\"'",
    )
    env = {"LAMBDA_TASK_ROOT": "/fn", "GEM_PATH": "/mine", "RUBYLIB": "/lib/mine"}
    result = run_sh(text, env, cwd=tmp_path)
    assert result.stdout.strip() == (
        "/var/runtime|/mine|/fn:/var/runtime/lib:/lib/mine|AWS_Lambda_ruby3.3"
    )


# --- .NET: the rendered bootstrap run against a task root and a stand-in `dotnet` -------------

# Prints its command line, one argument a line, and what the bootstrap exported.
FAKE = (
    '#!/bin/sh\necho "ran $0"\nfor a in "$@"; do echo "$a"; done\necho "env $AWS_EXECUTION_ENV"\n'
)


class DotnetFunction:
    """A task root, a runtime folder with RuntimeSupport builds and a stand-in ``dotnet``."""

    def __init__(self, root: Path, runtime_id: str, frameworks: tuple[str, ...]) -> None:
        self.root = root
        self.script = bootstrap(runtime_id)
        self.task = root / "task"
        self.runtime = root / "runtime"
        self.bin = root / "bin"
        for folder in (self.task, self.runtime, self.bin):
            folder.mkdir()
        for framework in frameworks:
            dll = self.support(framework)
            dll.parent.mkdir(parents=True)
            dll.write_text("")
        self.executable(self.bin / "dotnet")

    def support(self, framework: str) -> Path:
        lib = self.runtime / "Amazon.Lambda.RuntimeSupport" / "lib" / framework
        return lib / "Amazon.Lambda.RuntimeSupport.dll"

    def executable(self, path: Path, text: str = FAKE, mode: int = 0o755) -> Path:
        path.write_text(text)
        path.chmod(mode)
        return path

    def files(self, *names: str) -> None:
        for name in names:
            (self.task / name).write_text("{}")

    def run(self, handler: str, **env: str) -> tuple[int, list[str], str]:
        base = {
            "LAMBDA_TASK_ROOT": str(self.task),
            "LAMBDA_RUNTIME_DIR": str(self.runtime),
            "DOTNET_ROOT": str(self.bin),
            "_HANDLER": handler,
        }
        result = run_sh(self.script, {**base, **env}, cwd=self.root)
        return result.returncode, result.stdout.splitlines(), result.stderr


@pytest.fixture
def function(tmp_path: Path) -> DotnetFunction:
    return DotnetFunction(tmp_path, "dotnet8", ("net6.0", "net8.0", "netcoreapp3.1"))


HANDLER = "Orders::Orders.Function::Handle"


def test_dotnet_bootstrap_passes_the_functions_deps_and_runtimeconfig(
    function: DotnetFunction,
) -> None:
    # The handler's assembly has its own files; another assembly's are there too.
    function.files(
        "Orders.deps.json",
        "Orders.runtimeconfig.json",
        "Tools.deps.json",
        "Tools.runtimeconfig.json",
    )
    code, lines, stderr = function.run(HANDLER)
    assert code == 0, stderr
    task = function.task
    assert lines == [
        f"ran {function.bin / 'dotnet'}",
        "exec",
        "--depsfile", f"{task}/Orders.deps.json",
        "--runtimeconfig", f"{task}/Orders.runtimeconfig.json",
        str(function.support("net8.0")),  # this runtime's own build of RuntimeSupport
        HANDLER,
        "env AWS_Lambda_dotnet8",
    ]  # fmt: skip


def test_dotnet_bootstrap_takes_the_only_runtimeconfig_when_the_assembly_has_none(
    function: DotnetFunction,
) -> None:
    function.files("Shared.deps.json", "Shared.runtimeconfig.json")
    code, lines, stderr = function.run(HANDLER)
    assert code == 0, stderr
    assert lines[2:6] == [
        "--depsfile", f"{function.task}/Shared.deps.json",
        "--runtimeconfig", f"{function.task}/Shared.runtimeconfig.json",
    ]  # fmt: skip
    # Two candidates and none named for the assembly: AWS's exit codes, and a line saying why.
    function.files("Other.runtimeconfig.json")
    code, _, stderr = function.run(HANDLER)
    assert code == 106
    assert "not exactly one *.runtimeconfig.json" in stderr
    (function.task / "Shared.deps.json").unlink()
    code, _, stderr = function.run(HANDLER)
    assert code == 105
    assert "has no Orders.deps.json" in stderr


def test_dotnet_bootstrap_honours_lambda_dotnet_main_assembly(function: DotnetFunction) -> None:
    function.files(
        "Orders.deps.json", "Orders.runtimeconfig.json", "Main.deps.json", "Main.runtimeconfig.json"
    )
    for value in ("Main", "Main.dll"):
        code, lines, stderr = function.run(HANDLER, LAMBDA_DOTNET_MAIN_ASSEMBLY=value)
        assert code == 0, stderr
        assert lines[3] == f"{function.task}/Main.deps.json"
        assert lines[5] == f"{function.task}/Main.runtimeconfig.json"


def test_dotnet_bootstrap_runs_an_executable_assembly_or_a_native_executable(
    function: DotnetFunction,
) -> None:
    function.files("Worker.dll")
    code, lines, stderr = function.run("Worker")
    assert code == 0, stderr
    assert lines[:3] == [f"ran {function.bin / 'dotnet'}", "exec", f"{function.task}/Worker.dll"]
    native = function.executable(function.task / "worker-native")
    code, lines, _ = function.run("worker-native")
    assert lines[0] == f"ran {native}"
    assert lines[-1] == "env AWS_Lambda_dotnet8"
    code, _, stderr = function.run("Missing")
    assert code == 104
    assert f"{function.task}/Missing.dll" in stderr


def test_dotnet_bootstrap_runs_the_exec_wrapper_with_the_runtime_command_line(
    function: DotnetFunction,
) -> None:
    function.files("Orders.deps.json", "Orders.runtimeconfig.json")
    wrapper = function.executable(function.root / "wrapper")
    code, lines, stderr = function.run(HANDLER, AWS_LAMBDA_EXEC_WRAPPER=str(wrapper))
    assert code == 0, stderr
    assert lines[:3] == [f"ran {wrapper}", str(function.bin / "dotnet"), "exec"]
    assert lines[-2:] == [HANDLER, "env AWS_Lambda_dotnet8"]
    # A wrapper that is missing, or not executable: the shell's codes, as AWS's runtimes give.
    code, _, stderr = function.run(HANDLER, AWS_LAMBDA_EXEC_WRAPPER=str(function.root / "nope"))
    assert code == 127 and "no such file" in stderr
    wrapper.chmod(0o644)
    code, _, stderr = function.run(HANDLER, AWS_LAMBDA_EXEC_WRAPPER=str(wrapper))
    assert code == 126 and "not executable" in stderr


def test_newer_dotnet_rows_use_the_newest_runtimesupport_build_they_can_run(
    tmp_path: Path,
) -> None:
    # The pinned package has no net10.0 build: .NET 10 runs its net8.0 one, never netcoreapp3.1.
    function = DotnetFunction(tmp_path, "dotnet10", ("net6.0", "net8.0", "netcoreapp3.1"))
    function.files("Orders.deps.json", "Orders.runtimeconfig.json")
    code, lines, stderr = function.run(HANDLER)
    assert code == 0, stderr
    assert lines[6] == str(function.support("net8.0"))
    assert lines[-1] == "env AWS_Lambda_dotnet10"
