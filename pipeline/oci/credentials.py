"""Registry credentials: the environment (via Settings), ECR Public's token through boto3, or
the Docker config (``auths``, ``credHelpers``, ``credsStore``, read by the docker SDK). They are
held in memory only and never printed (``password`` is left out of the repr).

Each source is bound to the host its credentials were given for, and is asked only for that
host (``SOURCES``, in the order they are tried): the environment's pair belongs to the
command's ``--registry`` host, ECR Public's token to ``public.ecr.aws``, a Docker config entry
to the host it names. A ``--mirror`` on another host therefore never receives the primary's
password; it gets the Docker config's entry for its own host, or nothing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import docker.auth
import docker.errors

from ..errors import RegistryError
from ..settings import Settings

ECR_PUBLIC_HOST: Final = "public.ecr.aws"
ECR_PUBLIC_REGION: Final = "us-east-1"  # ECR Public's API lives only there
USER_ENV: Final = "LAMBDA_IMAGES_REGISTRY_USER"
PASSWORD_ENV: Final = "LAMBDA_IMAGES_REGISTRY_PASSWORD"


@dataclass(frozen=True, kw_only=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    source: str  # where they came from, for messages: "environment", "Docker config", …


def is_ecr_public(host: str) -> bool:
    return host == ECR_PUBLIC_HOST


def ecr_public_credentials(client: Any | None = None) -> Credentials:
    """A short-lived ECR Public login from ``get_authorization_token`` (default AWS chain)."""
    import botocore.exceptions

    if client is None:
        import boto3

        client = boto3.client("ecr-public", region_name=ECR_PUBLIC_REGION)
    try:
        data = client.get_authorization_token()["authorizationData"]
        token = data["authorizationToken"]
    except botocore.exceptions.NoCredentialsError:
        msg = (
            "no AWS credentials for ECR Public: configure the default credential chain "
            "(AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a role such as GitHub's "
            "OIDC role via aws-actions/configure-aws-credentials)"
        )
        raise RegistryError(msg) from None
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        msg = (
            f"ECR Public refused get_authorization_token ({code}): the role needs "
            "ecr-public:GetAuthorizationToken and sts:GetServiceBearerToken in us-east-1"
        )
        raise RegistryError(msg) from None
    except (botocore.exceptions.BotoCoreError, KeyError) as exc:
        raise RegistryError(f"ECR Public login failed: {type(exc).__name__}") from None
    try:
        user, sep, password = base64.b64decode(token).decode().partition(":")
    except ValueError:
        sep = ""
    if not sep:
        raise RegistryError("ECR Public returned an authorization token in an unknown form")
    return Credentials(username=user, password=password, source="ECR Public (boto3)")


def docker_config_credentials(host: str, config_dir: Path) -> Credentials | None:
    """Credentials for ``host`` from the Docker config (``auths``, ``credHelpers``,
    ``credsStore``), read by the docker SDK the way ``docker login`` wrote them."""
    path = config_dir / "config.json"
    if not path.is_file():
        return None
    try:
        json.loads(path.read_text("utf-8"))  # the SDK ignores a broken file; we say so
        entry = docker.auth.load_config(str(path)).resolve_authconfig(host)
    except (OSError, ValueError, docker.errors.DockerException) as exc:
        msg = f"{path}: cannot read the Docker config ({type(exc).__name__})"
        raise RegistryError(msg) from None
    # Entries from `auths` come back as username/password; credential helpers as Username/…
    user = (entry or {}).get("username") or (entry or {}).get("Username")
    password = (entry or {}).get("password") or (entry or {}).get("Password")
    if user and password:
        return Credentials(username=user, password=password, source="the Docker config")
    return None


def same_host(one: str, other: str) -> bool:
    """True when two registry hosts (``name[:port]``) are one: names compare without case."""
    return one.lower() == other.lower()


@dataclass(frozen=True, kw_only=True)
class Lookup:
    """What a credential source is asked: the host a request goes to, and the host the
    environment's pair was given for (the command's ``--registry``)."""

    host: str
    environment_host: str
    settings: Settings
    ecr_client: Any | None = None


def _environment(lookup: Lookup) -> Credentials | None:
    user, password = lookup.settings.registry_user, lookup.settings.registry_password
    if user and password and same_host(lookup.host, lookup.environment_host):
        return Credentials(username=user, password=password, source="the environment")
    return None


def _ecr_public(lookup: Lookup) -> Credentials | None:
    return ecr_public_credentials(lookup.ecr_client) if is_ecr_public(lookup.host) else None


def _docker_config(lookup: Lookup) -> Credentials | None:
    return docker_config_credentials(lookup.host, lookup.settings.docker_config)


# (name, source): tried in this order, the first that has credentials for the host wins.
SOURCES: Final[tuple[tuple[str, Callable[[Lookup], Credentials | None]], ...]] = (
    (f"{USER_ENV} and {PASSWORD_ENV}, for --registry's host only", _environment),
    (f"ECR Public's token (boto3), for {ECR_PUBLIC_HOST} only", _ecr_public),
    ("the Docker config's entry for the host", _docker_config),
)


def resolve_credentials(
    host: str, settings: Settings, *, environment_host: str, ecr_client: Any | None = None
) -> Credentials | None:
    """The credentials that belong to ``host``: the environment's pair when ``host`` is
    ``environment_host`` (the command's ``--registry``), then ECR Public's token for
    public.ecr.aws, then the Docker config's entry for ``host``."""
    lookup = Lookup(
        host=host, environment_host=environment_host, settings=settings, ecr_client=ecr_client
    )
    for _, source in SOURCES:
        found = source(lookup)
        if found is not None:
            return found
    return None
