"""The Ruby row built here from Debian 13's ruby3.3 (issue 25). `lambda-images rebuild` (the build
phase) gives both architectures, every conformance check passed, snapshotted, and a branch
that rebuilds the same image. Its handlers answer as AWS's Ruby runtime's do, on both
architectures, through `lambda-images invoke` — `file.method` and `file.Module::Class.method`
with `event:`/`context:`, the context's fields and remaining time, an exception in Lambda's
error shape, a gem from the function's `vendor/bundle` and one from a layer (`--layer`,
ruby/gems/3.3.0 and ruby/lib). Against a Runtime API that records what it is sent, the client
posts AWS's error types and headers, ends the process where AWS's does, and reports an init
error. A function image written as AWS's Ruby container guide writes it answers `docker run -p`
and a POST; the image's SBOM lists Debian's Ruby and every gem it holds.

The gems are made here: a tiny gem is built with `gem build` in a container of the phase's image
(RubyGems is not reachable), then installed with `gem install --local` into the folders Lambda
searches; nothing needs the host's Ruby."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import docker.types
import pytest
from apt_repo import dpkg_query
from cli_runner import lambda_images
from conftest import BuiltImages, Phase
from image_tree import config_of, file_tree, uname_in
from rie_http import LABEL, post_when_listening

from pipeline.emulator import INVOKE_PATH
from pipeline.emulator.function import function_arn
from pipeline.probes import copy_readable

RUBY = "ruby3.3.debian13"
ABI = "3.3.0"  # Ruby's ABI version, the folder name of every gem path for 3.3
ARCHES = ["x86_64", "arm64"]
pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.cells(RUBY)]

# Two tiny gems: one the function vendors (bundle's vendor/bundle), one a layer brings.
GEMS = {
    "greeter": (
        "1.2.0",
        'module Greeter\n  VERSION = "1.2.0"\n  def self.hello(name) = "hello, #{name}"\nend\n',
    ),
    "shelf": ("0.3.0", 'module Shelf\n  VERSION = "0.3.0"\nend\n'),
}
GEMSPEC = """Gem::Specification.new do |s|
  s.name = "{name}"
  s.version = "{version}"
  s.summary = "a gem made by the tests"
  s.authors = ["lambda-base-images tests"]
  s.files = ["lib/{name}.rb"]
  s.license = "MIT"
end
"""

APP = """\
require "rbconfig"
require "greeter"          # the function's own gem: vendor/bundle/ruby/3.3.0
require "shelf"            # a layer's gem: /opt/ruby/gems/3.3.0
require "layer_note"       # a layer's library: /opt/ruby/lib

module App
  class Orders
    def self.describe(event:, context:)
      App.describe(event, context, "Module::Class.method")
    end
  end

  def self.describe(event, context, form)
    {
      "form" => form, "event" => event, "machine" => RbConfig::CONFIG["host_cpu"],
      "ruby" => RUBY_VERSION, "greeting" => Greeter.hello(event["name"]),
      "shelf" => Shelf::VERSION, "note" => LayerNote::TEXT,
      "gem_dirs" => %w[greeter shelf].to_h { |g| [g, Gem.loaded_specs[g].full_gem_path] },
      "request_id" => context.aws_request_id, "arn" => context.invoked_function_arn,
      "function_name" => context.function_name, "function_version" => context.function_version,
      "memory" => context.memory_limit_in_mb, "log_group" => context.log_group_name,
      "log_stream" => context.log_stream_name, "deadline_ms" => context.deadline_ms,
      "remaining_ms" => context.get_remaining_time_in_millis,
      "trace" => ENV["_X_AMZN_TRACE_ID"], "execution_env" => ENV["AWS_EXECUTION_ENV"]
    }
  end
end

def handler(event:, context:)
  # The runtime's SDK, loaded in this form only: it takes a minute to load under qemu.
  require "aws-sdk-core"
  App.describe(event, context, "method").merge("sdk" => Aws::CORE_GEM_VERSION)
end
"""
# A handler that raises, in a file of its own that loads nothing.
ERRORS = """\
module App
  class OutOfStock < StandardError; end
end

def refuse(event:, context:)
  raise App::OutOfStock, "no #{event['item']} left"
end
"""


def run_in(engine: Any, image: str, folder: Path | None, argv: list[str]) -> str:
    """``argv`` in a container of ``image`` (with ``folder`` at /work), no network."""
    output: bytes = engine.containers.run(
        image,
        entrypoint=argv[:1],
        command=argv[1:],
        working_dir="/work" if folder else "/var/task",
        mounts=[docker.types.Mount("/work", str(folder), type="bind")] if folder else [],
        environment={"HOME": "/tmp"},
        network_disabled=True,
        remove=True,
        labels={LABEL: "ruby-row"},
    )
    return output.decode()


@pytest.fixture(scope="module")
def gems(
    built: BuiltImages, engine: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Each gem of GEMS built with `gem build` in the phase's own x86_64 image: name → .gem."""
    image = built(RUBY)["x86_64"].image_tag
    made = {}
    for name, (version, source) in GEMS.items():
        folder = tmp_path_factory.mktemp(f"gem-{name}")
        (folder / "lib").mkdir()
        (folder / "lib" / f"{name}.rb").write_text(source)
        (folder / f"{name}.gemspec").write_text(GEMSPEC.format(name=name, version=version))
        run_in(engine, image, folder, ["gem", "build", f"{name}.gemspec"])
        made[name] = folder / f"{name}-{version}.gem"
        assert made[name].is_file()
    return made


@pytest.fixture(scope="module")
def function(
    built: BuiltImages, engine: Any, gems: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """(task root, layer): app.rb with greeter in vendor/bundle; a layer with shelf in
    ruby/gems/3.3.0 and a plain library in ruby/lib, as Lambda expects a layer's zip."""
    image = built(RUBY)["x86_64"].image_tag
    code = tmp_path_factory.mktemp("ruby-code")
    (code / "app.rb").write_text(APP)
    (code / "errors.rb").write_text(ERRORS)
    layer = tmp_path_factory.mktemp("ruby-layer")
    (layer / "ruby" / "lib").mkdir(parents=True)
    (layer / "ruby" / "lib" / "layer_note.rb").write_text(
        'module LayerNote\n  TEXT = "from /opt/ruby/lib"\nend\n'
    )
    for folder, name, into in (
        (code, "greeter", "vendor/bundle/ruby"),
        (layer, "shelf", "ruby/gems"),
    ):
        shutil.copy(gems[name], folder / gems[name].name)
        run_in(engine, image, folder, [
            "gem", "install", "--local", "--no-document", "--ignore-dependencies",
            "--install-dir", f"{into}/{ABI}", gems[name].name,
        ])  # fmt: skip
        (folder / gems[name].name).unlink()
    return copy_readable(code, code), copy_readable(layer, layer)


def invoke(
    image: str, handler: str, code: Path, layer: Path, event: dict[str, Any]
) -> tuple[int, Any, str]:
    proc = lambda_images(
        "invoke", image, "--handler", handler, "--code", str(code), "--layer", str(layer),
        "--event", json.dumps(event), "--memory", "512", "--timeout", "120",
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout or "null"), proc.stderr


def upstream(debian_version: str) -> str:
    """`3.3.14-0+deb13u1` → `3.3.14`."""
    return debian_version.split(":", 1)[-1].rsplit("-", 1)[0]


# --- rebuild: every check, the snapshot, the branch round trip ----------------------------------

CHECKS = [
    "invocation", "read-only-rootfs", "readable-files", "entrypoint", "size", "architecture",
    "manifest", "no-credentials",
]  # fmt: skip


def test_both_architectures_pass_every_check_and_are_snapshotted(
    phase: Phase, engine: Any, built: BuiltImages
) -> None:
    for arch in ARCHES:
        target = built(RUBY)[arch]
        assert engine.images.get(target.image_tag).attrs["Architecture"] == target.arch.docker
        report = phase.conformance(RUBY, arch)
        assert report.ok, report.summary()
        assert [c.name for c in report.checks] == CHECKS
        assert phase.snapshot(RUBY, arch).layers
        assert uname_in(engine, target.image_tag) == target.arch.uname
    assert len(phase.branch(RUBY)) == 40


def test_branch_clone_rebuilds_the_same_image(
    phase: Phase, engine: Any, tmp_path: Path, cleanup_images: list[str]
) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "-b", RUBY, phase.remote, str(clone)], check=True)
    for arch, folder in (("x86_64", clone), ("arm64", clone / "arm64")):
        tag = f"ruby-row-test/{RUBY}:{arch}-from-branch"
        cleanup_images.append(tag)
        engine.images.build(path=str(folder), dockerfile=f"Dockerfile.{RUBY}", tag=tag, rm=True)
        original = str(phase.build_record(RUBY, arch).image_id)
        assert config_of(engine, tag) == config_of(engine, original)
        assert file_tree(engine, tag) == file_tree(engine, original)


# --- handlers through `lambda-images invoke` ------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize(
    ("handler", "form"),
    [("app.handler", "method"), ("app.App::Orders.describe", "Module::Class.method")],
)
def test_ruby_handler_answers_with_its_event_context_and_gems(
    built: BuiltImages, engine: Any, function: tuple[Path, Path], handler: str, form: str, arch: str
) -> None:
    target = built(RUBY)[arch]
    code, layer = function
    event = {"name": "Lambda", "items": [1, 2, 3], "arch": arch}
    status, answer, stderr = invoke(target.image_tag, handler, code, layer, event)
    assert status == 0, stderr[-2000:]
    installed = dpkg_query(engine, target.image_tag)
    assert answer["form"] == form
    assert answer["event"] == event
    assert answer["machine"] == target.arch.uname
    assert answer["ruby"] == upstream(installed["ruby3.3"])
    if form == "method":
        assert answer["sdk"] == upstream(installed["ruby-aws-sdk-core"])
    assert answer["greeting"] == "hello, Lambda"
    assert (answer["shelf"], answer["note"]) == ("0.3.0", "from /opt/ruby/lib")
    assert answer["gem_dirs"] == {
        "greeter": f"/var/task/vendor/bundle/ruby/{ABI}/gems/greeter-1.2.0",
        "shelf": f"/opt/ruby/gems/{ABI}/gems/shelf-0.3.0",
    }
    assert str(uuid.UUID(answer["request_id"])) == answer["request_id"]
    assert answer["arn"] == function_arn("test_function")
    assert (answer["function_name"], answer["function_version"]) == ("test_function", "$LATEST")
    assert answer["memory"] == "512"  # a string, as AWS's Ruby runtime gives it
    assert answer["log_group"] == "/aws/lambda/test_function"
    assert answer["log_stream"].startswith("$LATEST/")
    assert 0 < answer["remaining_ms"] <= 120_000
    assert answer["deadline_ms"] > 0
    assert answer["trace"].startswith("Root=1-")
    assert answer["execution_env"] == "AWS_Lambda_ruby3.3"


@pytest.mark.parametrize("arch", ARCHES)
def test_ruby_handler_that_raises_gets_lambdas_error_shape(
    built: BuiltImages, function: tuple[Path, Path], arch: str
) -> None:
    code, layer = function
    status, answer, _ = invoke(
        built(RUBY)[arch].image_tag, "errors.refuse", code, layer, {"item": "tea"}
    )
    assert status == 9  # InvocationError
    line = ERRORS.splitlines().index("  raise App::OutOfStock, \"no #{event['item']} left\"") + 1
    assert answer == {
        "errorType": "Function<App::OutOfStock>",
        "errorMessage": "no tea left",
        "stackTrace": [f"/var/task/errors.rb:{line}:in `refuse'"],
    }


def test_ruby_handler_that_cannot_load_is_an_init_error(
    built: BuiltImages, function: tuple[Path, Path]
) -> None:
    code, layer = function
    status, answer, _ = invoke(built(RUBY)["x86_64"].image_tag, "missing.handler", code, layer, {})
    assert status == 9
    assert answer["errorType"] == "Init<LoadError>"
    assert answer["errorMessage"] == "cannot load such file -- missing"


# --- AWS's container guide, as written: Gemfile, bundle install, CMD ---------------------------

GUIDE_DOCKERFILE = """\
FROM {image}
COPY Gemfile Gemfile.lock ${{LAMBDA_TASK_ROOT}}/
COPY vendor/cache/ ${{LAMBDA_TASK_ROOT}}/vendor/cache/
RUN bundle config set --local path 'vendor/bundle' && \\
    bundle install --local
COPY lambda_function.rb ${{LAMBDA_TASK_ROOT}}/
CMD [ "lambda_function.LambdaFunction::Handler.process" ]
"""
GUIDE_FUNCTION = """\
require "greeter"

module LambdaFunction
  class Handler
    def self.process(event:, context:)
      { "greeting" => Greeter.hello(event["name"]), "request_id" => context.aws_request_id,
        "gem_dir" => Gem.loaded_specs["greeter"].full_gem_path }
    end
  end
end
"""


def test_function_image_built_as_awss_ruby_guide_writes_it_answers_docker_run(
    built: BuiltImages,
    engine: Any,
    gems: dict[str, Path],
    tmp_path: Path,
    cleanup_images: list[str],
) -> None:
    """AWS's guide: `COPY Gemfile Gemfile.lock`, `bundle config set --local path
    'vendor/bundle' && bundle install`, the handler, `CMD ["lambda_function.LambdaFunction::
    Handler.process"]`. Here the gems come from vendor/cache (`bundle install --local`) and the
    build has no network at all; the guide's `gem install bundler:<version>` is left out, since
    the image carries bundler (Debian's) and that line needs RubyGems."""
    image = built(RUBY)["x86_64"].image_tag
    (tmp_path / "vendor" / "cache").mkdir(parents=True)
    shutil.copy(gems["greeter"], tmp_path / "vendor" / "cache")
    (tmp_path / "Gemfile").write_text("source 'https://rubygems.org'\n\ngem 'greeter'\n")
    (tmp_path / "lambda_function.rb").write_text(GUIDE_FUNCTION)
    # Gemfile.lock, as the author's own `bundle install` wrote it (here, without network).
    lock = tmp_path / "lock"
    shutil.copytree(tmp_path, lock, ignore=shutil.ignore_patterns("lock"))
    run_in(
        engine,
        image,
        lock,
        ["sh", "-c", "bundle config set --local path vendor/bundle && bundle install --local"],
    )
    shutil.copy(lock / "Gemfile.lock", tmp_path / "Gemfile.lock")
    shutil.rmtree(lock)
    (tmp_path / "Dockerfile").write_text(GUIDE_DOCKERFILE.format(image=image))
    tag = f"{image.split('/')[0]}/ruby-guide-function:test"
    cleanup_images.append(tag)
    for chunk in engine.api.build(
        path=str(tmp_path), tag=tag, rm=True, decode=True, network_mode="none"
    ):
        assert "error" not in chunk, chunk

    event = {"name": "guide"}
    container = engine.containers.run(
        tag, detach=True, ports={"8080/tcp": ("127.0.0.1", None)}, labels={LABEL: "ruby-guide"}
    )
    try:
        container.reload()
        port = container.ports["8080/tcp"][0]["HostPort"]
        url = f"http://127.0.0.1:{port}{INVOKE_PATH}"
        answer = json.loads(post_when_listening(url, json.dumps(event).encode(), container))
    finally:
        container.remove(force=True)
    assert answer["greeting"] == "hello, guide"
    assert answer["gem_dir"] == f"/var/task/vendor/bundle/ruby/{ABI}/gems/greeter-1.2.0"
    assert str(uuid.UUID(answer["request_id"])) == answer["request_id"]


# --- the SBOM ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_sbom_lists_debians_ruby_and_every_gem_with_version_and_purl(
    phase: Phase, engine: Any, built: BuiltImages, arch: str
) -> None:
    target = built(RUBY)[arch]
    sbom = json.loads(phase.cell(RUBY, arch).sbom.read_bytes())  # the branch's sbom.cdx.json
    purls = {c["purl"] for c in sbom["components"] if "purl" in c}
    installed = dpkg_query(engine, target.image_tag)
    # Debian's Ruby, as dpkg knows it.
    for package in ("ruby3.3", "libruby3.3", "ruby-aws-sdk-core"):
        version = installed[package].replace("+", "%2B")
        assert any(p.startswith(f"pkg:deb/debian/{package}@{version}?") for p in purls), package
    # Every gem specification in the image, as RubyGems inside it names the gems and versions
    # (asked of the x86_64 image, natively: both arches install the same Debian packages, and
    # the same listing under qemu takes a minute).
    listed = run_in(engine, built(RUBY)["x86_64"].image_tag, None, [
        "ruby", "-e",
        'Gem::Specification.each { |s| puts "#{s.name} #{s.version}" }; '
        'Gem::Specification.default_stubs.each { |s| puts "#{s.name} #{s.version}" }',
    ])  # fmt: skip
    expected = {
        f"pkg:gem/{name}@{version}"
        for name, version in (line.split() for line in listed.splitlines())
    }
    gems = {p.split("?")[0] for p in purls if p.startswith("pkg:gem/")}
    assert gems == expected
    assert "pkg:gem/aws-sdk-core@" + upstream(installed["ruby-aws-sdk-core"]) in gems


# --- the client against a Runtime API that records what it is sent -------------------------------

LOOP = """\
def handler(event:, context:)
  case event["do"]
  when "raise" then raise ArgumentError, "asked to raise"
  when "fail" then raise IOError, "a user's error"
  when "typo" then nil.upcase
  else { "trace" => ENV["_X_AMZN_TRACE_ID"], "n" => event["n"] }
  end
end
"""


class RecordingRuntimeAPI:
    """Lambda's Runtime API on 127.0.0.1: serves ``events`` in order to /next (then holds the
    request), records every POST as (path, headers, body)."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        import http.server
        import threading

        self.events = list(events)
        self.posts: list[tuple[str, dict[str, str], Any]] = []
        self.served: list[tuple[str, str]] = []  # (request id, trace id)
        self.done = threading.Event()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if not api.events:
                    api.done.wait(60)
                    self.send_error(410)
                    return
                body = json.dumps(api.events.pop(0)).encode()
                request_id, trace = (
                    str(uuid.uuid4()),
                    f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}",
                )
                api.served.append((request_id, trace))
                self.send_response(200)
                for name, value in (
                    ("Lambda-Runtime-Aws-Request-Id", request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(int((time.time() + 60) * 1000))),
                    ("Lambda-Runtime-Invoked-Function-Arn", function_arn("test_function")),
                    ("Lambda-Runtime-Trace-Id", trace),
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                ):
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                api.posts.append((self.path, dict(self.headers), json.loads(data)))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.done.set()
        self.server.shutdown()
        self.server.server_close()


def run_client(engine: Any, image: str, code: Path, handler: str, api: RecordingRuntimeAPI) -> int:
    """The image's bootstrap (the client) against ``api``, until it exits: its exit status."""
    container = engine.containers.run(
        image, entrypoint=["/var/runtime/bootstrap"], detach=True, network_mode="host",
        environment={"AWS_LAMBDA_RUNTIME_API": api.address, "_HANDLER": handler},
        mounts=[docker.types.Mount("/var/task", str(code), type="bind", read_only=True)],
        labels={LABEL: "ruby-client"},
    )  # fmt: skip
    try:
        status: int = container.wait(timeout=120)["StatusCode"]
    finally:
        container.remove(force=True)
    return status


def test_ruby_client_posts_lambdas_error_types_and_ends_the_process_as_awss_does(
    built: BuiltImages, engine: Any, tmp_path: Path
) -> None:
    """AWS's Ruby client names Ruby's own error classes in Lambda-Runtime-Function-Error-Type
    and any other class as Function<UserException>; a NoMethodError ends the process once it is
    reported (the next event starts a new one); each event's trace header is _X_AMZN_TRACE_ID."""
    (tmp_path / "loop.rb").write_text(LOOP)
    code = copy_readable(tmp_path, tmp_path)
    events = [{"do": "raise"}, {"do": "fail"}, {"do": "echo", "n": 3}, {"do": "typo"}, {"n": 5}]
    api = RecordingRuntimeAPI(events)
    try:
        status = run_client(engine, built(RUBY)["x86_64"].image_tag, code, "loop.handler", api)
    finally:
        api.close()
    assert status == 1
    ids = [request_id for request_id, _ in api.served]
    assert len(ids) == 4  # the fifth event was never asked for
    kinds = [
        (path, headers.get("Lambda-Runtime-Function-Error-Type")) for path, headers, _ in api.posts
    ]
    assert kinds == [
        (f"/2018-06-01/runtime/invocation/{ids[0]}/error", "Function<ArgumentError>"),
        (f"/2018-06-01/runtime/invocation/{ids[1]}/error", "Function<UserException>"),
        (f"/2018-06-01/runtime/invocation/{ids[2]}/response", None),
        (f"/2018-06-01/runtime/invocation/{ids[3]}/error", "Function<NoMethodError>"),
    ]
    bodies = [body for _, _, body in api.posts]
    assert [b.get("errorType") for b in bodies] == [
        "Function<ArgumentError>", "Function<IOError>", None, "Function<NoMethodError>",
    ]  # fmt: skip
    assert bodies[1]["errorMessage"] == "a user's error"
    assert bodies[2] == {"trace": api.served[2][1], "n": 3}


def test_ruby_client_reports_an_init_error_and_exits(
    built: BuiltImages, engine: Any, tmp_path: Path
) -> None:
    (tmp_path / "broken.rb").write_text("def handler(event:, context:)\n  event\n")  # no `end`
    code = copy_readable(tmp_path, tmp_path)
    api = RecordingRuntimeAPI([{"n": 1}])
    try:
        status = run_client(engine, built(RUBY)["x86_64"].image_tag, code, "broken.handler", api)
    finally:
        api.close()
    assert status == 1
    assert api.served == []
    [(path, headers, body)] = api.posts
    assert path == "/2018-06-01/runtime/init/error"
    assert body["errorType"] == "Init<SyntaxError>"
    assert headers["Lambda-Runtime-Function-Error-Type"] == "Function<UserException>"
    assert "/var/task/broken.rb" in body["errorMessage"]
