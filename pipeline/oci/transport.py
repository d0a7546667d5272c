"""Talking to a registry over HTTP: retries, authentication, and what counts as a failure.

Every request goes through one retry loop (``tenacity``: exponential backoff with jitter and a
cap) for 429, 5xx, timeouts and dropped connections; 401, 403 and 404 fail at once with a
message saying what to fix. Authentication follows the registry's challenge: HTTP Basic (a plain
``docker-registry`` with htpasswd) or a bearer token from the realm it names (ECR Public, Docker
Hub). The protocol itself (blobs, manifests) is in registry.py.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import requests
import tenacity

from .. import log
from ..errors import RegistryError
from .credentials import PASSWORD_ENV, USER_ENV, Credentials

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How hard to try before a request counts as failed."""

    attempts: int = 8
    initial: float = 0.5  # seconds; the backoff window doubles from here
    cap: float = 30.0  # longest single wait
    timeout: float = 120.0  # connect/read timeout of one request


def host_name(host: str) -> str:
    """The name or address of ``host[:port]`` without the port (``[::1]:5000`` → ``::1``)."""
    try:
        return (urlsplit(f"//{host}").hostname or "").lower()
    except ValueError:
        return ""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ``[::1]``), with any port."""
    name = host_name(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def default_scheme(host: str) -> str:
    """https, except for loopback registries (which Docker also talks to over plain http)."""
    return "http" if is_loopback(host) else "https"


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of a URL (the default port filled in): what credentials belong to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def header_safe(value: str) -> bool:
    """False for a value that would break an HTTP header: line breaks or other control bytes."""
    return not any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)


@dataclass(kw_only=True)
class TransferStats:
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    blobs_present: int = 0
    blobs_mounted: int = 0  # cross-repository mounts: no bytes sent
    bytes_mounted: int = 0  # what those mounts did not upload
    manifests_written: int = 0


class _Transient(Exception):
    """A failure worth retrying (429, 5xx, a dropped or timed-out connection)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


_CONNECTION_ERRORS: Final = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def _registry_message(response: requests.Response) -> str:
    """The registry's own error text (``{"errors": [{"code", "message"}]}``), if any."""
    try:
        errors = response.json().get("errors") or []
        first = errors[0]
        return f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except (ValueError, AttributeError, IndexError, TypeError):
        return response.reason or ""


def _bare_origin(url: str) -> str:
    """Scheme, host and port of a URL for messages (no user info, path or query)."""
    parts = urlsplit(url)
    try:
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


def _bare(url: str) -> str:
    """A URL for messages: path only; query strings can carry upload state or signatures."""
    return urlsplit(url).path


class Transport:
    """HTTP to one registry host: a session, the retry loop, and authentication per
    repository (HTTP Basic or a bearer token from the realm the registry names)."""

    def __init__(
        self,
        host: str,
        *,
        scheme: str | None = None,
        credentials: Credentials | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.host = host
        self.base = f"{scheme or default_scheme(host)}://{host}"
        self.origin = origin(self.base)
        self.credentials = credentials
        self.retry = retry or RetryPolicy()
        self.stats = TransferStats()
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "lambda-images"
        self._challenge: dict[str, str] | None = None
        self._auth: dict[str, str] = {}  # repository → Authorization header value

    def _wait(self, state: tenacity.RetryCallState) -> float:
        backoff = tenacity.wait_random_exponential(
            multiplier=self.retry.initial, max=self.retry.cap
        )
        seconds = backoff(state)
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            seconds = max(seconds, min(exc.retry_after, self.retry.cap))
        return float(seconds)

    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        def note(state: tenacity.RetryCallState) -> None:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            reason = exc.reason if isinstance(exc, _Transient) else type(exc).__name__
            wait = state.next_action.sleep if state.next_action else 0.0
            log.detail(
                f"    {self.host}: {what}: {reason}; retry {state.attempt_number}/"
                f"{self.retry.attempts - 1} in {wait:.1f}s"
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retry.attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Transient),
            before_sleep=note,
            reraise=True,
        )
        try:
            return retrying(fn)
        except _Transient as exc:
            msg = (
                f"registry {self.host}: {what} failed {self.retry.attempts} times "
                f"(last: {exc.reason}); the registry is unreachable or overloaded: check that "
                "it is up and reachable, then run again (finished uploads are not repeated)"
            )
            raise RegistryError(msg) from None

    def _send(
        self,
        method: str,
        url: str,
        *,
        repo: str | None,
        headers: Mapping[str, str] | None = None,
        body: Callable[[], Any] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One attempt; raises _Transient for what a retry may cure.

        The registry's credentials go only to the registry's own origin: a ``Location`` that
        points elsewhere (a storage backend, a CDN, or someone else's server) gets none.
        """
        all_headers = dict(headers or {})
        auth = self._auth.get(repo or "")
        if auth and origin(url) == self.origin:
            all_headers["Authorization"] = auth
        data = body() if body else None
        try:
            response = self.session.request(
                method,
                url,
                headers=all_headers,
                data=data,
                timeout=self.retry.timeout,
                # requests drops Authorization on a redirect to another host by itself.
                allow_redirects=method in ("GET",),
                stream=stream,
            )
        except requests.exceptions.SSLError:
            msg = (
                f"registry {self.host}: TLS failed on {method} {_bare(url)}: check the "
                "certificate (or use a loopback registry over http for local tests)"
            )
            raise RegistryError(msg) from None
        except _CONNECTION_ERRORS as exc:
            raise _Transient(f"{type(exc).__name__} on {method} {_bare(url)}") from None
        finally:
            close = getattr(data, "close", None)
            if close is not None:
                close()
        if response.status_code == 429 or response.status_code >= 500:
            reason = f"HTTP {response.status_code} on {method} {_bare(url)}"
            raise _Transient(reason, _retry_after(response))
        return response

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        repo: str | None,
        what: str,
        ok: tuple[int, ...],
        headers: Mapping[str, str] | None = None,
        body: Callable[[], Any] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """Send with retries; authenticate on a 401 once; fail fast on other 4xx. With
        ``stream`` the body is left unread, for the caller to read (and close)."""
        if repo is not None and repo not in self._auth:
            self._authenticate(repo)
        url = urljoin(self.base, path_or_url)

        def attempt() -> requests.Response:
            response = self._send(method, url, repo=repo, headers=headers, body=body, stream=stream)
            if response.status_code == 401 and repo is not None and self.credentials:
                # An expired bearer token: fetch a new one and try again, once.
                response.close()
                self._auth.pop(repo, None)
                self._authenticate(repo)
                response = self._send(
                    method, url, repo=repo, headers=headers, body=body, stream=stream
                )
            if response.status_code not in ok:
                raise self._refused(response, what, repo)
            return response

        return self._retrying(what, attempt)

    def _expired(self, response: requests.Response, repo: str) -> None:
        """A 401 in the middle of an upload: the bearer token ran out (Docker Hub's last five
        minutes). Log in again and let the retry loop start the upload over."""
        if (
            response.status_code == 401
            and self.credentials
            and self._auth.get(repo, "").startswith("Bearer ")
        ):
            self._auth.pop(repo, None)
            self._authenticate(repo)
            raise _Transient(f"HTTP 401 on {response.request.method} (token expired)")

    def _refused(self, response: requests.Response, what: str, repo: str | None) -> RegistryError:
        status = response.status_code
        said = _registry_message(response)
        where = f"registry {self.host}: {what}: HTTP {status} ({said})"
        if status == 401:
            if self.credentials is None:
                fix = (
                    f"it needs credentials: `docker login {self.host}`, or set {USER_ENV} and "
                    f"{PASSWORD_ENV}"
                )
            else:
                fix = (
                    f"it refused user {self.credentials.username!r} (credentials from "
                    f"{self.credentials.source}): log in again or renew them"
                )
            return RegistryError(f"{where}; {fix}")
        if status == 403:
            return RegistryError(
                f"{where}; the credentials may not push to {repo}: grant push rights "
                "(for ECR Public: ecr-public:InitiateLayerUpload, UploadLayerPart, "
                "CompleteLayerUpload, PutImage, BatchCheckLayerAvailability)"
            )
        if status == 404:
            return RegistryError(
                f"{where}; the repository {repo} does not exist: create it first "
                f"(ECR Public: aws ecr-public create-repository --repository-name {repo} "
                "--region us-east-1)"
            )
        return RegistryError(f"{where}; the request was rejected, nothing more was sent")

    def _challenge_for(self) -> dict[str, str]:
        """What ``GET /v2/`` answers without credentials: scheme and its parameters."""
        if self._challenge is None:
            response = self._retrying(
                "API version check", lambda: self._send("GET", self.base + "/v2/", repo=None)
            )
            header = response.headers.get("WWW-Authenticate", "")
            if response.status_code == 200:
                self._challenge = {"scheme": "none"}
            elif response.status_code == 401 and header:
                scheme, _, params = header.partition(" ")
                parsed = dict(re.findall(r'(\w+)="([^"]*)"', params))
                self._challenge = {"scheme": scheme.lower(), **parsed}
            else:
                msg = (
                    f"registry {self.host}: GET /v2/ answered HTTP {response.status_code}; "
                    f"is {self.base} an OCI registry?"
                )
                raise RegistryError(msg)
        return self._challenge

    def _authenticate(self, repo: str) -> None:
        challenge = self._challenge_for()
        scheme = challenge["scheme"]
        if scheme == "none":
            self._auth[repo] = ""
            return
        if self.credentials is None:
            msg = (
                f"registry {self.host} asks for credentials ({scheme}): `docker login "
                f"{self.host}`, or set {USER_ENV} and {PASSWORD_ENV}"
            )
            raise RegistryError(msg)
        user, password = self.credentials.username, self.credentials.password
        if not (header_safe(user) and header_safe(password)):
            msg = (
                f"registry {self.host}: the credentials from {self.credentials.source} contain "
                "a line break or another control character; refused (check how the password "
                "was stored: a trailing newline from a file is the usual cause)"
            )
            raise RegistryError(msg)
        basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if scheme == "basic":
            self._auth[repo] = basic
            return
        if scheme != "bearer" or "realm" not in challenge:
            raise RegistryError(f"registry {self.host}: unsupported authentication {scheme!r}")
        query = {"scope": f"repository:{repo}:pull,push"}
        if challenge.get("service"):
            query["service"] = challenge["service"]
        realm = challenge["realm"]
        self._check_realm(realm)
        token_url = realm + ("&" if "?" in realm else "?") + urlencode(query)

        def fetch() -> requests.Response:
            return self._send("GET", token_url, repo=None, headers={"Authorization": basic})

        response = self._retrying("token request", fetch)
        if response.status_code != 200:
            raise self._refused(response, f"token for {repo}", repo)
        try:
            answer = response.json()
            token = answer.get("token") or answer.get("access_token")
        except ValueError:
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"registry {self.host}: the token service answered without a token")
        if not header_safe(token):
            msg = (
                f"registry {self.host}: the token service answered a token with line breaks or "
                "control characters; refused (it would not fit in an Authorization header)"
            )
            raise RegistryError(msg)
        self._auth[repo] = f"Bearer {token}"

    def _check_realm(self, realm: str) -> None:
        """The password goes to the token realm: only over https, or over plain http when the
        registry itself is a plain-http loopback one and so is the realm."""
        scheme, name, _ = origin(realm)
        if scheme == "https" and name:
            return
        plain_loopback = self.origin[0] == "http" and is_loopback(self.host)
        if scheme == "http" and plain_loopback and is_loopback(urlsplit(realm).netloc):
            return
        msg = (
            f"registry {self.host}: its token realm {_bare_origin(realm)} is not https; the "
            "credentials are not sent there"
        )
        raise RegistryError(msg)
