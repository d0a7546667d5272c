"""The emulator's function options (--env, --env-file, --layer, --function-name): parsed as
AWS's emulator and `docker run` users expect, refused with one line naming what is wrong (and
never echoing a value, which may be a secret), layers merged in Lambda's order."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from cli_runner import lambda_images

from pipeline.emulator.options import (
    check_function_name,
    function_environment,
    merge_layers,
    read_env_file,
)
from pipeline.errors import ConfigurationError, UsageError

SECRET = "hunter2-do-not-print"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return lambda_images(*args, env=env, timeout=120)


def test_env_value_keeps_every_equals_sign_after_the_first() -> None:
    env = function_environment(["DSN=postgres://db/app?a=1&b=2", "EMPTY="])
    assert env == {"DSN": "postgres://db/app?a=1&b=2", "EMPTY": ""}


def test_env_file_is_read_as_docker_reads_it_and_env_options_win(tmp_path: Path) -> None:
    env_file = tmp_path / "function.env"
    env_file.write_text('# comment\n\nTABLE=orders\nSTAGE=file\nQUOTED="kept as is"\n')
    env = function_environment(["STAGE=option"], env_file)
    assert env == {"TABLE": "orders", "STAGE": "option", "QUOTED": '"kept as is"'}


def test_a_key_alone_passes_this_process_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    assert function_environment(["AWS_ACCESS_KEY_ID"], environ=os.environ) == {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE"
    }
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    with pytest.raises(UsageError, match="AWS_ACCESS_KEY_ID has no '=VALUE' and is not set"):
        function_environment(["AWS_ACCESS_KEY_ID"], environ=os.environ)


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("AWS_LAMBDA_FUNCTION_NAME", "use --function-name"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "use --memory"),
        ("_HANDLER", "use --handler"),
        ("AWS_LAMBDA_RUNTIME_API", "set by the emulator"),
    ],
)
def test_variables_the_emulator_sets_are_refused(key: str, hint: str) -> None:
    with pytest.raises(UsageError, match=hint):
        function_environment([f"{key}=x"])


def test_a_bad_env_file_line_names_the_file_and_line_without_its_value(tmp_path: Path) -> None:
    env_file = tmp_path / "function.env"
    env_file.write_text(f"GOOD=1\n\n{SECRET} is not a pair\n")
    with pytest.raises(ConfigurationError) as caught:
        read_env_file(env_file)
    assert str(caught.value).startswith(f"{env_file}:3: expected KEY=VALUE")
    result = run_cli("invoke", "some/image:tag", "--env-file", str(env_file))
    assert result.returncode == 11
    assert result.stderr.strip().splitlines() == [f"error: {caught.value}"]
    assert SECRET not in result.stderr


def test_a_mistyped_env_option_is_one_line_exit_2_without_its_text() -> None:
    result = run_cli("invoke", "some/image:tag", "--env", "GOOD=1", "--env", f"{SECRET} oops")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --env (#2): expected KEY=VALUE, or KEY to pass this shell's value"
    ]
    result = run_cli("invoke", "some/image:tag", "--env", f"9LIVES={SECRET}")
    assert result.returncode == 2
    assert "'9LIVES' is not a variable name Lambda accepts" in result.stderr
    assert SECRET not in result.stderr


def test_function_names_follow_lambdas_rules() -> None:
    assert check_function_name("orders-api_2") == "orders-api_2"
    for bad in ("", "has space", "x" * 65, "arn:aws:lambda"):
        with pytest.raises(UsageError, match="1 to 64 letters, digits, hyphens or underscores"):
            check_function_name(bad)


def test_layers_merge_in_order_a_later_file_replacing_an_earlier_one(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "python" / "mylib").mkdir(parents=True)
    (first / "python" / "mylib" / "__init__.py").write_text("first")
    (first / "python" / "only_first.py").write_text("first")
    (first / "bin").mkdir()
    (first / "bin" / "tool").write_text("#!/bin/sh\n")
    (first / "bin" / "tool").chmod(0o700)
    (second / "python" / "mylib").mkdir(parents=True)
    (second / "python" / "mylib" / "__init__.py").write_text("second")
    for folder in (first, second, *first.rglob("*"), *second.rglob("*")):
        if folder.is_dir():
            folder.chmod(0o700)
    merged = merge_layers([first, second])
    try:
        files = {p.relative_to(merged).as_posix(): p.read_text() for p in merged.rglob("*.*")}
        files["bin/tool"] = (merged / "bin" / "tool").read_text()
        assert files == {
            "python/mylib/__init__.py": "second",
            "python/only_first.py": "first",
            "bin/tool": "#!/bin/sh\n",
        }
        # Readable (and the tool still executable) by the function's non-root user.
        assert (merged / "bin" / "tool").stat().st_mode & 0o777 == 0o755
        assert all(p.stat().st_mode & 0o005 == 0o005 for p in merged.rglob("*") if p.is_dir())
        assert (first / "python" / "mylib" / "__init__.py").read_text() == "first"
    finally:
        subprocess.run(["rm", "-rf", str(merged)], check=True)


def test_a_layer_that_cannot_merge_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "python").mkdir(parents=True)
    (first / "python" / "mylib").write_text("a file")
    (second / "python" / "mylib").mkdir(parents=True)
    (second / "python" / "mylib" / "__init__.py").write_text("a folder")
    before = set(os.listdir(tmp_path.parent))
    with pytest.raises(UsageError, match=f"--layer {second}: python/mylib: a file in an earlier"):
        merge_layers([first, second])
    assert set(os.listdir(tmp_path.parent)) == before


# A layer's symbolic links are copied as links, and nothing is written through one: the merged
# folder is on the host, where a link of one layer would let the next write anywhere.


def layers_with_link(tmp_path: Path, target: str, name: str) -> tuple[Path, Path]:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / name).symlink_to(target)
    return first, second


def test_a_later_layer_never_writes_through_an_earlier_layers_link_to_a_folder(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "host-folder"
    outside.mkdir()
    first, second = layers_with_link(tmp_path, str(outside), "lib")
    (second / "lib").mkdir()
    (second / "lib" / "x").write_text("planted")
    before = set(os.listdir(tempfile.gettempdir()))
    with pytest.raises(UsageError, match="lib: a symbolic link in an earlier layer that leads"):
        merge_layers([first, second])
    assert list(outside.iterdir()) == []
    assert set(os.listdir(tempfile.gettempdir())) <= before  # the merged folder is gone


def test_a_later_layers_file_replaces_an_earlier_layers_link_not_its_target(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("host file")
    first, second = layers_with_link(tmp_path, str(victim), "config")
    (second / "config").write_text("layer file")
    merged = merge_layers([first, second])
    try:
        assert victim.read_text() == "host file"
        assert not (merged / "config").is_symlink()
        assert (merged / "config").read_text() == "layer file"
    finally:
        subprocess.run(["rm", "-rf", str(merged)], check=True)


def test_links_are_kept_and_a_link_inside_opt_may_be_written_through(tmp_path: Path) -> None:
    first, second = layers_with_link(tmp_path, "python", "lib")
    (first / "python").mkdir()
    (first / "bin").mkdir()
    (first / "bin" / "tool").symlink_to("/usr/bin/env")  # leads out, but is never written
    (second / "lib").mkdir()
    (second / "lib" / "x.py").write_text("x")
    merged = merge_layers([first, second])
    try:
        assert os.readlink(merged / "lib") == "python"
        assert os.readlink(merged / "bin" / "tool") == "/usr/bin/env"
        assert (merged / "python" / "x.py").read_text() == "x"
    finally:
        subprocess.run(["rm", "-rf", str(merged)], check=True)


def test_an_entry_below_a_link_leading_out_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "host-folder"
    outside.mkdir()
    first, second = layers_with_link(tmp_path, "../../../../../../..", "up")
    (second / "up").mkdir()
    (second / "up" / "x").write_text("planted")
    with pytest.raises(UsageError, match=r"--layer .*: up: a symbolic link in an earlier layer"):
        merge_layers([first, second])


def test_a_fifo_in_a_layer_is_refused_instead_of_blocking_the_copy(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    layer.mkdir()
    os.mkfifo(layer / "pipe")
    with pytest.raises(UsageError, match="pipe: not a file, a folder or a symbolic link"):
        merge_layers([layer])


def test_code_and_layers_are_mounted_as_fields_never_as_a_colon_separated_string(
    tmp_path: Path,
) -> None:
    """``--code ./a:b`` as a bind string ("a:b:/var/task:ro") would give the engine other
    paths and modes; a mount's source is a field of its own."""
    import docker.errors

    from pipeline.emulator.container import start_container
    from pipeline.emulator.function import FunctionConfig
    from pipeline.errors import EngineError

    code = tmp_path / "fn:rw,z"
    code.mkdir()
    seen: dict[str, object] = {}

    class Containers:
        def create(self, image: str, **kwargs: object) -> None:
            seen.update(kwargs)
            raise docker.errors.APIError("stop here")

    class Client:
        containers = Containers()

    config = FunctionConfig(image="some/image:tag", code=code)
    with pytest.raises(EngineError):
        start_container(Client(), config, None, "127.0.0.1:9001", print, opt=tmp_path / "opt")
    assert "volumes" not in seen
    assert seen["mounts"] == [
        {"Target": "/var/task", "Source": str(code), "Type": "bind", "ReadOnly": True},
        {"Target": "/opt", "Source": str(tmp_path / "opt"), "Type": "bind", "ReadOnly": True},
    ]
