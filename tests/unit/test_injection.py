"""Injection: no value of runtimes.yaml, of the environment or of an image config can add a line
to a Dockerfile or an option to a command.

For every field that reaches a rendered Dockerfile, a branch Dockerfile or a command line, each
hostile value is either refused when the matrix is loaded (one ConfigurationError), or — should a
later change of the schema let it through — renders exactly the lines that a benign value
renders, with only the value itself differing; on a command line it stays one operand after
``--``. The benign value is checked to reach the output, so that no field passes by never
being rendered.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.base import mmdebstrap_command
from pipeline.errors import ConfigurationError, SnapshotError
from pipeline.inputs import npm_lock_argv, pip_download_args
from pipeline.matrix import TEMPLATES_DIR, Matrix, RootfsBase, load_matrix
from pipeline.records import ArchSnapshot, ImageConfig, Layer
from pipeline.render import render_target
from pipeline.settings import Settings
from pipeline.snapshot import snapshot_dockerfile

REPO = Path(__file__).resolve().parents[2]
RUNTIMES = {
    "provided.debian12", "python3.11.debian12", "nodejs18.x.debian12", "nodejs22.x",
    "python3.7", "dotnet8", "java21",
}  # fmt: skip


def _trimmed() -> dict[str, Any]:
    """The repository's matrix cut down to the runtimes these tests render (loads faster)."""
    doc: dict[str, Any] = yaml.safe_load((REPO / "runtimes.yaml").read_text("utf-8"))
    doc["runtimes"] = [r for r in doc["runtimes"] if r["id"] in RUNTIMES]
    used = set()
    for r in doc["runtimes"]:
        for names in r.get("inputs", {}).values():
            used.update([names] if isinstance(names, str) else names)
    doc["inputs"] = {k: v for k, v in doc["inputs"].items() if k in used}
    kept = {r["id"] for r in doc["runtimes"]}
    for family in doc["families"].values():  # a declared latest must be a runtime still there
        if family.get("latest") not in kept:
            family.pop("latest", None)
    return doc


DOC = _trimmed()

HOSTILE = [
    "x\nRUN touch /pwned",
    "x\r\nRUN touch /pwned",
    "x\rRUN touch /pwned",
    "x\u2028RUN touch /pwned",
    "x\u0085RUN touch /pwned",
    "x\\",  # a trailing backslash continues a Dockerfile line
    'x" LABEL evil="1',
    "x $(touch /pwned)",
    "x`touch /pwned`",
    "x;touch /pwned",
    "x && touch /pwned",
    "${HOME}",
    "x\ttouch",
    "x y",
    "--x=1",
    "-x",
    "",
]

Setter = Callable[[dict[str, Any], str], None]


def runtime_field(runtime_id: str, *keys: str | int) -> Setter:
    def apply(doc: dict[str, Any], value: str) -> None:
        node = next(r for r in doc["runtimes"] if r["id"] == runtime_id)
        for key in keys[:-1]:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        if isinstance(keys[-1], int):
            node[keys[-1]] = value
        else:
            node[keys[-1]] = value

    return apply


def path_field(*keys: str | int) -> Setter:
    def apply(doc: dict[str, Any], value: str) -> None:
        node: Any = doc
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return apply


def rename_key(*keys: str, old: str) -> Setter:
    def apply(doc: dict[str, Any], value: str) -> None:
        node: Any = doc
        for key in keys:
            node = node[key]
        node[value] = node.pop(old)

    return apply


def list_item(runtime_id: str, manager: str) -> Setter:
    def apply(doc: dict[str, Any], value: str) -> None:
        node = next(r for r in doc["runtimes"] if r["id"] == runtime_id)
        node.setdefault("install", {})[manager] = [value]

    return apply


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    runtime: str  # the runtime whose output the field reaches
    arch: str
    set: Setter
    benign: str


DOCKERFILE_FIELDS = [
    Field("runtime.id", "provided.debian12", "x86_64", runtime_field("provided.debian12", "id"),
          "benign.runtime"),
    Field("runtime.name", "python3.11.debian12", "x86_64",
          runtime_field("python3.11.debian12", "name"), "Benign Name"),
    Field("runtime.tag", "python3.11.debian12", "x86_64",
          runtime_field("python3.11.debian12", "tag"), "benign-tag"),
    Field("runtime.version (the default tag)", "provided.debian12", "x86_64",
          runtime_field("provided.debian12", "version"), "benign7"),
    Field("runtime.install.apt", "python3.11.debian12", "x86_64",
          list_item("python3.11.debian12", "apt"), "benign-package"),
    Field("runtime.install.rpm", "nodejs22.x", "x86_64", list_item("nodejs22.x", "rpm"),
          "benign-package"),
    Field("operating_systems.name", "python3.11.debian12", "x86_64",
          path_field("operating_systems", "debian12", "name"), "Benign OS"),
    Field("operating_systems.tools", "nodejs22.x", "x86_64",
          path_field("operating_systems", "al2023", "tools", 0), "benign-tool"),
    Field("operating_systems.toolchain", "python3.7", "x86_64",
          path_field("operating_systems", "al", "toolchain", 0), "benign-compiler"),
    Field("families.name", "python3.7", "x86_64", path_field("families", "python", "name"),
          "Benign Family"),
    Field("families.environment value", "dotnet8", "x86_64",
          path_field("families", "dotnet", "environment", "DOTNET_NOLOGO"), "benign"),
    Field("families.environment name", "dotnet8", "x86_64",
          rename_key("families", "dotnet", "environment", old="DOTNET_NOLOGO"), "BENIGN_NAME"),
    Field("families.destinations", "java21", "x86_64",
          path_field("families", "java", "destinations", "ric"), "/benign/lib"),
    Field("inputs.url (file name)", "nodejs22.x", "x86_64",
          lambda doc, v: path_field("inputs", "node-22", "urls", "x86_64")(
              doc, f"https://example.com/download/{v}"), "benign-file"),
    Field("inputs.install_as", "nodejs22.x", "x86_64",
          path_field("inputs", "rie", "install_as"), "benign-name"),
    Field("inputs.version", "python3.7", "x86_64", path_field("inputs", "cpython-3.7", "version"),
          "9.8.7"),
    Field("inputs.unpack.compile", "python3.7", "x86_64",
          path_field("inputs", "cpython-3.7", "unpack", "compile", 0), "--enable-benign"),
]  # fmt: skip


def load(doc: dict[str, Any], folder: Path) -> Matrix:
    path = folder / "runtimes.yaml"
    path.write_text(yaml.dump(doc, Dumper=yaml.CSafeDumper, allow_unicode=True), encoding="utf-8")
    return load_matrix(path, templates_dir=TEMPLATES_DIR)


def with_value(field: Field, value: str) -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    field.set(doc, value)
    return doc


def dockerfile(matrix: Matrix, runtime_id: str, arch: str) -> str:
    if runtime_id not in {r.id for r in matrix.runtimes}:  # the field was the id itself
        (runtime_id,) = {r.id for r in matrix.runtimes} - RUNTIMES
    (target,) = matrix.targets([matrix.runtime(runtime_id)], [arch])
    return render_target(target, templates_dir=TEMPLATES_DIR).dockerfile


def refused(doc: dict[str, Any], folder: Path) -> Matrix | None:
    """The loaded matrix, or None when loading refused it with one line."""
    try:
        return load(doc, folder)
    except ConfigurationError as exc:
        assert "\n" not in str(exc)
        assert "runtimes.yaml:" in str(exc)
        return None


@pytest.mark.parametrize("field", DOCKERFILE_FIELDS, ids=[f.name for f in DOCKERFILE_FIELDS])
def test_a_hostile_value_adds_no_dockerfile_line(field: Field, tmp_path: Path) -> None:
    benign_matrix = load(with_value(field, field.benign), tmp_path)
    benign = dockerfile(benign_matrix, field.runtime, field.arch)
    assert field.benign in benign  # the field reaches the Dockerfile
    for value in HOSTILE:
        matrix = refused(with_value(field, value), tmp_path)
        if matrix is None:
            continue
        loaded_id = next(iter({r.id for r in matrix.runtimes} - RUNTIMES), field.runtime)
        text = dockerfile(matrix, loaded_id, field.arch)
        # Accepted: the same lines as with the benign value, except those that held it.
        hostile_lines, benign_lines = text.split("\n"), benign.split("\n")
        assert len(hostile_lines) == len(benign_lines), value
        for got, expected in zip(hostile_lines, benign_lines, strict=True):
            assert got == expected or field.benign in expected, value


def test_a_newline_is_refused_at_load_in_every_field(tmp_path: Path) -> None:
    """Whatever else a field accepts, a line break is refused where the matrix is read."""
    for field in DOCKERFILE_FIELDS:
        for value in ("x\nRUN touch /pwned", "x\rRUN touch /pwned", "x\u2028RUN"):
            with pytest.raises(ConfigurationError, match=r"runtimes\.yaml:\d+: "):
                load(with_value(field, value), tmp_path)


# --- command lines ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("manager", "runtime_id", "benign"),
    [("pip", "python3.11.debian12", "benign==1.0"), ("npm", "nodejs18.x.debian12", "benign@1.0.0")],
)
def test_a_hostile_package_never_becomes_an_option(
    manager: str, runtime_id: str, benign: str, tmp_path: Path
) -> None:
    def argv(matrix: Matrix) -> list[str]:
        runtime = matrix.runtime(runtime_id)
        if manager == "pip":
            return pip_download_args(runtime, "x86_64", "/dest")
        return npm_lock_argv(runtime)

    setter = list_item(runtime_id, manager)
    benign_argv = argv(load(with_value(Field("", "", "", setter, ""), benign), tmp_path))
    operands = benign_argv.index("--") + 1  # npm's: the row's package, then its npm sets'
    assert benign_argv[operands] == benign
    for value in HOSTILE:
        matrix = refused(with_value(Field("", "", "", setter, ""), value), tmp_path)
        if matrix is not None:  # accepted: one operand, after "--"
            expected = [*benign_argv[:operands], value, *benign_argv[operands + 1 :]]
            assert argv(matrix) == expected, value


# After "--": the suite, the output, and the sources lines of the suite, -updates and -security.
MMDEBSTRAP_OPERANDS = 5


@pytest.mark.parametrize("key", ["suite", "mirror", "security_mirror", "include"])
def test_a_hostile_rootfs_value_never_becomes_an_mmdebstrap_option(
    key: str, tmp_path: Path
) -> None:
    benign = {
        "suite": "benign",
        "mirror": "http://example.com/debian",
        "security_mirror": "http://example.com/debian-security",
        "include": "benign-pkg",
    }

    def setter(doc: dict[str, Any], value: str) -> None:
        rootfs = doc["operating_systems"]["debian12"]["base"]["rootfs"]
        rootfs[key] = [value] if key == "include" else value

    def argv(matrix: Matrix) -> list[str]:
        base = matrix.operating_systems["debian12"].base
        assert isinstance(base, RootfsBase)
        return mmdebstrap_command(base, "amd64", Path("/out/rootfs.tar"))

    benign_argv = argv(load(with_value(Field("", "", "", setter, ""), benign[key]), tmp_path))
    assert any(benign[key] in arg for arg in benign_argv)
    assert benign_argv[-MMDEBSTRAP_OPERANDS - 1] == "--"  # suite, output, sources: operands
    for value in HOSTILE:
        matrix = refused(with_value(Field("", "", "", setter, ""), value), tmp_path)
        if matrix is not None:
            hostile_argv = argv(matrix)
            assert len(hostile_argv) == len(benign_argv), value
            assert hostile_argv.index("--") == len(hostile_argv) - MMDEBSTRAP_OPERANDS - 1, value
            if key == "include":  # the one value inside an option: it must stay one element
                assert f"--include={value}" in hostile_argv, value


# --- the environment and image configs ------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "setting"),
    [
        ("LAMBDA_IMAGES_NAMESPACE", "namespace"),
        ("LAMBDA_IMAGES_SOURCE", "source"),
        ("LAMBDA_IMAGES_REVISION", "revision"),
    ],
)
def test_a_hostile_environment_value_is_refused_at_start(variable: str, setting: str) -> None:
    # A plain value is taken as it is.
    assert getattr(Settings.from_environ({variable: "benign"}), setting) == "benign"
    for value in HOSTILE:
        if value.strip() != value or not value:
            continue  # surrounding blanks are stripped and empty is unset, by design
        if variable != "LAMBDA_IMAGES_NAMESPACE" and not any(
            c in value for c in "\n\r\t\u2028\u0085"
        ):
            continue  # a label value is any one line: the Dockerfile quotes it
        with pytest.raises(ConfigurationError, match=variable):
            Settings.from_environ({variable: value})


def test_a_namespace_reaches_the_from_line_whole(tmp_path: Path) -> None:
    settings = Settings.from_environ({"LAMBDA_IMAGES_NAMESPACE": "benign-space"})
    matrix = dataclasses.replace(load(copy.deepcopy(DOC), tmp_path), namespace=settings.namespace)
    text = dockerfile(matrix, "provided.debian12", "x86_64")
    # Both stages of the template (the inputs stage and the image) start from the base.
    assert [line for line in text.splitlines() if line.startswith("FROM ")] == [
        "FROM benign-space/base-debian12:x86_64 AS inputs",
        "FROM benign-space/base-debian12:x86_64",
    ]


def _snapshot(
    env: list[str], labels: dict[str, str], *, user: str = "", working_dir: str = "/var/task"
) -> ArchSnapshot:
    layer = Layer(
        file="a" * 64 + ".tar.xz", sha256="a" * 64, diff_id="sha256:" + "b" * 64, size=1,
        compressed_size=1,
    )  # fmt: skip
    config = ImageConfig(
        env=env, entrypoint=["/lambda-entrypoint.sh"], cmd=None, working_dir=working_dir,
        user=user, labels=labels,
    )  # fmt: skip
    return ArchSnapshot(
        runtime="provided.debian12", arch="x86_64", docker_arch="amd64", image_id="sha256:c",
        layers=[layer], config=config,
    )  # fmt: skip


INSTRUCTION = {"env": "ENV BENIGN=", "label": "LABEL", "user": "USER ", "working_dir": "WORKDIR "}


@pytest.mark.parametrize("where", list(INSTRUCTION))
def test_a_hostile_image_config_value_adds_no_branch_dockerfile_line(where: str) -> None:
    def render(value: str) -> str:
        if where == "env":
            return snapshot_dockerfile(_snapshot([f"BENIGN={value}"], {}), "x86_64/")
        if where == "label":
            return snapshot_dockerfile(_snapshot([], {"org.example.benign": value}), "x86_64/")
        return snapshot_dockerfile(_snapshot([], {}, **{where: value}), "x86_64/")

    benign = render("benign")
    assert "benign" in benign
    for value in HOSTILE:
        try:
            text = render(value)
        except (SnapshotError, ValueError) as exc:  # refused where the config is made
            assert "\n" not in str(exc)
            continue
        if value == "" and where in ("user", "working_dir"):
            assert len(text.split("\n")) == len(benign.split("\n")) - 1  # no line at all
            continue
        # Accepted: one word that ends its line and reads back as the value itself.
        assert len(text.split("\n")) == len(benign.split("\n")), value
        line = next(ln for ln in text.split("\n") if ln.startswith(INSTRUCTION[where]))
        word = line.split("=", 1)[1] if where in ("env", "label") else line.split(" ", 1)[1]
        assert (unquote(word) if word.startswith('"') else word) == value
        if not word.startswith('"'):
            assert re.fullmatch(r"[A-Za-z0-9_./:@%+,=-]+", word), word


def unquote(quoted: str) -> str:
    """A Dockerfile double-quoted word (backslash escapes), which must end the line."""
    assert quoted.startswith('"')
    out, i = [], 1
    while quoted[i] != '"':
        if quoted[i] == "\\":
            i += 1
        out.append(quoted[i])
        i += 1
    assert i == len(quoted) - 1, f"text after the closing quote: {quoted[i + 1 :]!r}"
    return "".join(out)
