"""Settings: every environment variable and global option, read once into a frozen object.

The CLI builds one ``Settings`` at start-up and passes it down; no other module reads the
environment (a unit test checks): what a child process inherits is ``Settings.environ``. Empty
values count as unset (CI systems set variables to "" freely). Each variable is documented in
the README's "Environment" table.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from .errors import ConfigurationError

# 2024-01-01T00:00:00Z: the file timestamps of reproducible outputs when SOURCE_DATE_EPOCH is unset.
DEFAULT_SOURCE_DATE_EPOCH: Final = 1704067200
DEFAULT_NAMESPACE: Final = "lambda-images"


def _value(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name, "").strip()


def parse_epoch(raw: str) -> int:
    """SOURCE_DATE_EPOCH as seconds; malformed is an error, never silently replaced."""
    if not raw:
        return DEFAULT_SOURCE_DATE_EPOCH
    if not re.fullmatch(r"[0-9]{1,11}", raw):
        msg = f"SOURCE_DATE_EPOCH={raw!r}: expected a non-negative integer (seconds since 1970)"
        raise ConfigurationError(msg)
    return int(raw)


def parse_release_time(raw: str) -> int:
    """LAMBDA_IMAGES_RELEASE_TIME as seconds; unset means now (when the command started)."""
    if not raw:
        return int(time.time())
    if not re.fullmatch(r"[0-9]{1,11}", raw):  # ASCII digits: str.isdigit takes "²" and "١٢"
        msg = (
            f"LAMBDA_IMAGES_RELEASE_TIME={raw!r}: expected a non-negative integer "
            "(seconds since 1970, e.g. `date +%s`)"
        )
        raise ConfigurationError(msg)
    return int(raw)


def parse_builder(builder: str, docker_buildkit: str) -> str:
    """Which builder to drive: LAMBDA_IMAGES_BUILDER, else DOCKER_BUILDKIT as the docker CLI
    reads it (1 → BuildKit, 0 → classic), else "" (decided by the engine's version)."""
    if builder:
        if builder.lower() not in ("buildkit", "classic"):
            msg = f"LAMBDA_IMAGES_BUILDER={builder!r}: expected 'buildkit' or 'classic'"
            raise ConfigurationError(msg)
        return builder.lower()
    return {"1": "buildkit", "true": "buildkit", "0": "classic", "false": "classic"}.get(
        docker_buildkit.lower(), ""
    )


# What each variable may hold where a Dockerfile line, an image name or a label carries it.
_NAMESPACE: Final = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*")
_NETWORK: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_OCTET: Final = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4: Final = re.compile(rf"{_OCTET}(\.{_OCTET}){{3}}", re.ASCII)
_LABEL_TEXT: Final = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]{1,500}")
# A registry's base URL: http(s), a host, an optional port and path; no user part, query or
# fragment (a token there would reach messages), at most 300 characters.
_BASE_URL: Final = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%+@/-]*)?")


@dataclass(frozen=True, kw_only=True)
class Upstreams:
    """Where ``outdated`` and ``lock --upgrade`` read what each registry serves (base URLs,
    without a trailing slash): each defaults to the public registry and is overridable, as the
    tools themselves are (npm's registry setting, the go command's GOPROXY). "" means the
    registry is not read: GOPROXY says off or direct, or a tool's own variable holds a URL
    with a user part (credentials), which is never sent anywhere from here."""

    pypi: str = "https://pypi.org/pypi"  # LAMBDA_IMAGES_PYPI_URL: <base>/<name>/json
    npm: str = "https://registry.npmjs.org"  # npm_config_registry (npm's own setting)
    maven: str = "https://repo1.maven.org/maven2"  # LAMBDA_IMAGES_MAVEN_URL
    goproxy: str = "https://proxy.golang.org"  # GOPROXY's first entry
    nodejs: str = "https://nodejs.org/dist"  # LAMBDA_IMAGES_NODEJS_DIST_URL: <base>/index.json


def base_url(value: str) -> str | None:
    """``value`` as a base URL without its trailing slashes; None when it is no http(s) URL,
    or has a user part, query or fragment."""
    return value.rstrip("/") if len(value) <= 300 and _BASE_URL.fullmatch(value) else None


def parse_upstreams(env: Mapping[str, str]) -> Upstreams:
    """Each registry's base URL from the environment, or the public registry's. Our own
    variables must hold a plain URL (the value is never shown: it may hold a token); the
    tools' own (npm's, the go command's) may hold what those tools accept, and a registry
    they name in a form not read here is not read."""

    def ours(name: str, default: str) -> str:
        value = _value(env, name)
        if not value:
            return default
        url = base_url(value)
        if url is None:
            msg = (
                f"{name}: expected an http(s) URL without a user part, query or fragment "
                "(e.g. https://registry.example/path)"
            )
            raise ConfigurationError(msg)
        return url

    npm = _value(env, "npm_config_registry") or _value(env, "NPM_CONFIG_REGISTRY")
    goproxy = re.split(r"[,|]", _value(env, "GOPROXY"), maxsplit=1)[0].strip()
    return Upstreams(
        pypi=ours("LAMBDA_IMAGES_PYPI_URL", Upstreams.pypi),
        npm=(base_url(npm) or "") if npm else Upstreams.npm,
        maven=ours("LAMBDA_IMAGES_MAVEN_URL", Upstreams.maven),
        goproxy=(base_url(goproxy) or "") if goproxy else Upstreams.goproxy,
        nodejs=ours("LAMBDA_IMAGES_NODEJS_DIST_URL", Upstreams.nodejs),
    )


def _checked(name: str, value: str, pattern: re.Pattern[str], expected: str) -> str:
    if value and not pattern.fullmatch(value):
        shown = value if len(value) <= 60 else value[:57] + "..."
        msg = f"{name}={shown!r}: expected {expected}"
        raise ConfigurationError(msg.replace("\n", "\\n"))
    return value


@dataclass(frozen=True, kw_only=True)
class Settings:
    matrix: Path = Path("runtimes.yaml")  # LAMBDA_IMAGES_MATRIX, --matrix
    work: Path = Path("out")  # LAMBDA_IMAGES_WORK, --work
    today: dt.date = field(default_factory=dt.date.today)  # --today
    cache: Path = Path.home() / ".cache" / "lambda-images"  # LAMBDA_IMAGES_CACHE, XDG_CACHE_HOME
    namespace: str = DEFAULT_NAMESPACE  # LAMBDA_IMAGES_NAMESPACE: local image names
    epoch: int = DEFAULT_SOURCE_DATE_EPOCH  # SOURCE_DATE_EPOCH: file times, image `created`
    # LAMBDA_IMAGES_RELEASE_TIME: the release's identity (dated tags), once per run; now if unset
    release: int = field(default_factory=lambda: int(time.time()))
    source: str = ""  # LAMBDA_IMAGES_SOURCE: org.opencontainers.image.source
    revision: str = ""  # LAMBDA_IMAGES_REVISION: org.opencontainers.image.revision
    docker_host: str = ""  # DOCKER_HOST (the docker SDK reads it too)
    docker_config: Path = Path.home() / ".docker"  # DOCKER_CONFIG
    registry_user: str = ""  # LAMBDA_IMAGES_REGISTRY_USER
    registry_password: str = field(default="", repr=False)  # LAMBDA_IMAGES_REGISTRY_PASSWORD
    builder: str = (
        ""  # LAMBDA_IMAGES_BUILDER, else DOCKER_BUILDKIT: "buildkit", "classic", "" (auto)
    )
    build_network: str = "host"  # LAMBDA_IMAGES_BUILD_NETWORK: network mode of BuildKit RUN steps
    # LAMBDA_IMAGES_RUNTIME_API_HOST: the address of this host where the emulator's Runtime API
    # listens, which the engine's containers reach ("": found from the engine, emulator/network.py)
    runtime_api_host: str = ""
    # LAMBDA_IMAGES_BUILD_LEDGER: a file each image build appends a line to (pipeline/ledger.py)
    build_ledger: Path | None = None
    build_ledger_by: str = ""  # LAMBDA_IMAGES_BUILD_LEDGER_BY: who built, in those lines
    github_actions: bool = False  # GITHUB_ACTIONS=true
    # GITHUB_STEP_SUMMARY: the job summary file plan, publish and refresh append a table to
    step_summary: Path | None = None
    debug: bool = False  # LAMBDA_IMAGES_DEBUG: tracebacks instead of one-line errors
    upstreams: Upstreams = field(default_factory=Upstreams)  # registries outdated reads
    # The whole environment as the process started, for the commands it runs (git, go,
    # mmdebstrap) and `invoke --env KEY`; nothing else reads the environment.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        xdg = _value(env, "XDG_CACHE_HOME")
        cache = _value(env, "LAMBDA_IMAGES_CACHE") or (
            str(Path(xdg) / "lambda-images") if xdg else str(cls.cache)
        )
        return cls(
            matrix=Path(_value(env, "LAMBDA_IMAGES_MATRIX") or cls.matrix),
            work=Path(_value(env, "LAMBDA_IMAGES_WORK") or cls.work),
            cache=Path(cache),
            namespace=_checked(
                "LAMBDA_IMAGES_NAMESPACE",
                _value(env, "LAMBDA_IMAGES_NAMESPACE"),
                _NAMESPACE,
                "lowercase letters and digits, parts joined by '.', '_' or '-'",
            )
            or DEFAULT_NAMESPACE,
            epoch=parse_epoch(_value(env, "SOURCE_DATE_EPOCH")),
            release=parse_release_time(_value(env, "LAMBDA_IMAGES_RELEASE_TIME")),
            source=_checked(
                "LAMBDA_IMAGES_SOURCE",
                _value(env, "LAMBDA_IMAGES_SOURCE"),
                _LABEL_TEXT,
                "one line of printable text (a label value), at most 500 characters",
            ),
            revision=_checked(
                "LAMBDA_IMAGES_REVISION",
                _value(env, "LAMBDA_IMAGES_REVISION"),
                _LABEL_TEXT,
                "one line of printable text (a label value), at most 500 characters",
            ),
            docker_host=_value(env, "DOCKER_HOST"),
            docker_config=Path(_value(env, "DOCKER_CONFIG") or cls.docker_config),
            registry_user=_value(env, "LAMBDA_IMAGES_REGISTRY_USER"),
            registry_password=env.get("LAMBDA_IMAGES_REGISTRY_PASSWORD", ""),
            builder=parse_builder(
                _value(env, "LAMBDA_IMAGES_BUILDER"), _value(env, "DOCKER_BUILDKIT")
            ),
            build_network=_checked(
                "LAMBDA_IMAGES_BUILD_NETWORK",
                _value(env, "LAMBDA_IMAGES_BUILD_NETWORK"),
                _NETWORK,
                "a Docker network name (letters, digits, '_', '.', '-')",
            )
            or cls.build_network,
            runtime_api_host=_checked(
                "LAMBDA_IMAGES_RUNTIME_API_HOST",
                _value(env, "LAMBDA_IMAGES_RUNTIME_API_HOST"),
                _IPV4,
                "an IPv4 address of this host (e.g. 192.168.1.20)",
            ),
            build_ledger=Path(ledger)
            if (ledger := _value(env, "LAMBDA_IMAGES_BUILD_LEDGER"))
            else None,
            build_ledger_by=_checked(
                "LAMBDA_IMAGES_BUILD_LEDGER_BY",
                _value(env, "LAMBDA_IMAGES_BUILD_LEDGER_BY"),
                _LABEL_TEXT,
                "one line of printable text, at most 500 characters",
            ),
            github_actions=_value(env, "GITHUB_ACTIONS") == "true",
            step_summary=Path(summary) if (summary := _value(env, "GITHUB_STEP_SUMMARY")) else None,
            debug=_value(env, "LAMBDA_IMAGES_DEBUG") not in ("", "0"),
            upstreams=parse_upstreams(env),
            environ=MappingProxyType(dict(env)),
        )

    @property
    def labels(self) -> dict[str, str]:
        """The OCI labels only the job knows (where the source is, which revision)."""
        labels = {}
        if self.source:
            labels["org.opencontainers.image.source"] = self.source
        if self.revision:
            labels["org.opencontainers.image.revision"] = self.revision
        return labels
