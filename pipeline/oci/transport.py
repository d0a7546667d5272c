"""Talking to a registry over HTTP: retries, authentication, and what counts as a failure.

Every request goes through one retry loop (``tenacity``: exponential backoff with jitter and a
cap) for 429, 5xx, timeouts and dropped connections; 401, 403 and 404 fail at once with a
message saying what to fix. Authentication follows the registry's challenge: HTTP Basic (a plain
``docker-registry`` with htpasswd) or a bearer token from the realm it names (ECR Public, Docker
Hub). The protocol itself (blobs, manifests) is in registry.py.

A registry is not trusted to be well-behaved: every body is read up to a limit and within a
deadline, redirects are followed by hand (a few, http or https only, never from https down to
http), and whatever text of its own it sends (error messages, headers) is quoted as one short
line before it reaches a message.
"""

from __future__ import annotations

import base64
import email.utils
import ipaddress
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import requests
import tenacity
import urllib3.exceptions

from .. import log
from ..errors import RegistryError
from .credentials import PASSWORD_ENV, USER_ENV, Credentials

T = TypeVar("T")

MAX_REDIRECTS: Final = 5  # a blob GET is redirected once (to storage or a CDN) in practice
MAX_ERROR_BODY: Final = 64 * 1024  # of a refusal, read for its message
MAX_JSON_ANSWER: Final = 4 * 1024 * 1024  # a token, a page of tags, a referrers list
READ_SIZE: Final = 64 * 1024
MIN_RATE: Final = 64 * 1024  # bytes per second a long body must keep up, on average


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How hard to try before a request counts as failed."""

    attempts: int = 8
    initial: float = 0.5  # seconds; the backoff window doubles from here
    cap: float = 30.0  # longest single wait
    timeout: float = 120.0  # connect/read timeout of one request, and the time to read a body


@dataclass(frozen=True, kw_only=True)
class Answer:
    """A registry's answer with its body read (up to the limit the request allowed)."""

    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes
    next_url: str | None  # a ``Link: <…>; rel="next"`` header, for paginated lists


def quoted(text: str, limit: int = 200) -> str:
    """Text a registry sent (an error message, a header), fit for a message: one line (see
    log.one_line), at most ``limit`` characters."""
    line = log.one_line(text)
    return line if len(line) <= limit else line[: limit - 1] + "…"


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


class Unreachable(RegistryError):
    """A registry that did not answer (every retry failed), as opposed to one that answered
    something refused: callers that can go on without it (``outdated``) tell them apart."""


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


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (RFC 9110: an ASCII number of seconds or an HTTP date), or
    None when it is absent or neither; the wait itself is capped by the retry policy."""
    value = headers.get("Retry-After", "").strip()
    if value.isascii() and value.isdigit():
        return float(min(int(value[:9]), 86_400))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, min(when.timestamp() - time.time(), 86_400.0))


def _registry_message(answer: Answer) -> str:
    """The registry's own error text (``{"errors": [{"code", "message"}]}``), quoted as one
    short line; empty when it sent none."""
    try:
        first = json.loads(answer.body)["errors"][0]
        said = f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except (ValueError, RecursionError, LookupError, TypeError, AttributeError):
        return ""
    return quoted(said)


def _discard(response: requests.Response) -> bytes:
    """Close a response whose body is not wanted, reading a short one first (the connection
    then goes back to the pool)."""
    try:
        declared = response.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared[:20]) <= MAX_ERROR_BODY:
            for _chunk in response.iter_content(MAX_ERROR_BODY):
                pass
    except requests.exceptions.RequestException:
        pass
    finally:
        response.close()
    return b""


def _bare(url: str) -> str:
    """A URL for messages: path only (query strings can carry upload state or signatures),
    quoted: a redirect's path is the registry's text."""
    return quoted(urlsplit(url).path, 120)


def _bare_origin(url: str) -> str:
    """Scheme, host and port of a URL for messages (no user info, path or query)."""
    parts = urlsplit(url)
    try:
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return quoted(f"{parts.scheme}://{host}{port}", 120)


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
            raise Unreachable(msg) from None

    def _send(
        self,
        method: str,
        url: str,
        *,
        repo: str | None,
        headers: Mapping[str, str] | None = None,
        body: Callable[[], Any] | None = None,
    ) -> requests.Response:
        """One attempt, its body left unread (the caller reads it with ``_body`` or closes the
        response); raises _Transient for what a retry may cure.

        A GET follows up to MAX_REDIRECTS redirects, each to http or https (never from https
        down to http). The registry's credentials go only to the registry's own origin: a
        ``Location`` that points elsewhere (a storage backend, a CDN, or someone else's server)
        gets none.
        """
        first = origin(url)
        for _hop in range(MAX_REDIRECTS + 1):
            if origin(url) != first and headers:
                # An Authorization given by the caller (Basic, to a token realm) stays with it.
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            response = self._send_once(method, url, repo=repo, headers=headers, body=body)
            location = response.headers.get("Location")
            if method != "GET" or not response.is_redirect or location is None:
                return response
            response.close()
            url = self._redirect(url, location)
        msg = (
            f"registry {self.host}: {method} {_bare(url)} was redirected more than "
            f"{MAX_REDIRECTS} times; refused (a redirect loop)"
        )
        raise RegistryError(msg)

    def _redirect(self, url: str, location: str) -> str:
        """Where a redirect leads: an http or https URL, not a downgrade from https."""
        target = urljoin(url, location)
        scheme, name, _ = origin(target)
        if scheme not in ("http", "https") or not name:
            msg = (
                f"registry {self.host}: {_bare(url)} was redirected to {quoted(target, 120)}, "
                "which is no http or https URL; refused"
            )
            raise RegistryError(msg)
        if origin(url)[0] == "https" and scheme == "http":
            msg = (
                f"registry {self.host}: {_bare(url)} was redirected from https to plain http "
                f"({_bare_origin(target)}); refused"
            )
            raise RegistryError(msg)
        return target

    def _send_once(
        self,
        method: str,
        url: str,
        *,
        repo: str | None,
        headers: Mapping[str, str] | None,
        body: Callable[[], Any] | None,
    ) -> requests.Response:
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
                allow_redirects=False,
                stream=True,
            )
        except requests.exceptions.SSLError:
            msg = (
                f"registry {self.host}: TLS failed on {method} {_bare(url)}: check the "
                "certificate (or use a loopback registry over http for local tests)"
            )
            raise RegistryError(msg) from None
        except _CONNECTION_ERRORS as exc:
            raise _Transient(f"{type(exc).__name__} on {method} {_bare(url)}") from None
        except requests.exceptions.RequestException as exc:  # an invalid URL or header
            msg = f"registry {self.host}: {method} {_bare(url)}: {type(exc).__name__}; refused"
            raise RegistryError(msg) from None
        finally:
            close = getattr(data, "close", None)
            if close is not None:
                close()
        if response.status_code == 429 or response.status_code >= 500:
            response.close()
            reason = f"HTTP {response.status_code} on {method} {_bare(url)}"
            raise _Transient(reason, _retry_after(response.headers))
        return response

    def _body(self, response: requests.Response, limit: int, what: str) -> bytes:
        """The body of ``response``, at most ``limit`` bytes (longer is a RegistryError); the
        response is closed after. A dropped connection, or a body slower than ``_in_time``
        allows, is _Transient."""
        data = bytearray()
        try:
            declared = response.headers.get("Content-Length", "")
            if declared.isascii() and declared.isdigit() and int(declared[:20]) > limit:
                raise self._too_long(what, limit)
            for chunk in self._chunks(response, what):
                data += chunk
                if len(data) > limit:
                    raise self._too_long(what, limit)
        finally:
            response.close()
        return bytes(data)

    def _chunks(self, response: requests.Response, what: str) -> Iterator[bytes]:
        """A body as it arrives (each piece as one read from the socket gets it, so that a
        trickle is noticed), until it has taken longer than the retry policy's timeout plus
        the time its bytes would take at MIN_RATE."""
        started = time.monotonic()
        received = 0
        while True:
            try:
                chunk = response.raw.read1(READ_SIZE, decode_content=True)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise _Transient(f"{type(exc).__name__} while reading {what}") from None
            if not chunk:
                return
            received += len(chunk)
            if time.monotonic() - started > self.retry.timeout + received / MIN_RATE:
                raise _Transient(f"{what}: the answer came too slowly")
            yield chunk

    def _too_long(self, what: str, limit: int) -> RegistryError:
        return RegistryError(
            f"registry {self.host}: {what}: the answer is longer than {log.human_size(limit)}; "
            "refused (nothing that long is expected there)"
        )

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
        limit: int = 0,
    ) -> Answer:
        """Send with retries; authenticate on a 401 once; fail fast on other 4xx. The body of
        an answer in ``ok`` is read up to ``limit`` bytes (with 0 it is not read)."""
        if repo is not None and repo not in self._auth:
            self._authenticate(repo)
        url = urljoin(self.base, path_or_url)

        def attempt() -> Answer:
            response = self._send(method, url, repo=repo, headers=headers, body=body)
            if response.status_code == 401 and repo is not None and self.credentials:
                # An expired bearer token: fetch a new one and try again, once.
                response.close()
                self._auth.pop(repo, None)
                self._authenticate(repo)
                response = self._send(method, url, repo=repo, headers=headers, body=body)
            if response.status_code not in ok:
                raise self._refused(response, what, repo)
            next_url = response.links.get("next", {}).get("url")
            data = self._body(response, limit, what) if limit else _discard(response)
            return Answer(
                status=response.status_code, headers=response.headers, body=data, next_url=next_url
            )

        return self._retrying(what, attempt)

    def _expired(self, response: requests.Response, repo: str) -> None:
        """A 401 in the middle of an upload: the bearer token ran out (Docker Hub's last five
        minutes). Log in again and let the retry loop start the upload over."""
        if (
            response.status_code == 401
            and self.credentials
            and self._auth.get(repo, "").startswith("Bearer ")
        ):
            response.close()
            self._auth.pop(repo, None)
            self._authenticate(repo)
            raise _Transient(f"HTTP 401 on {response.request.method} (token expired)")

    def _refused(self, response: requests.Response, what: str, repo: str | None) -> RegistryError:
        """The error for an answer that is not one of the expected ones; its body is read (a
        little of it) for the registry's own message."""
        status = response.status_code
        try:
            body = self._body(response, MAX_ERROR_BODY, what)
        except (RegistryError, _Transient):
            body = b""
        answer = Answer(status=status, headers=response.headers, body=body, next_url=None)
        said = _registry_message(answer) or quoted(response.reason or "", 80)
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
        if 300 <= status < 400:
            return RegistryError(
                f"{where}; a redirect was not expected there, nothing more was sent"
            )
        return RegistryError(f"{where}; the request was rejected, nothing more was sent")

    def _challenge_for(self) -> dict[str, str]:
        """What ``GET /v2/`` answers without credentials: scheme and its parameters."""
        if self._challenge is None:

            def ping() -> requests.Response:
                response = self._send("GET", self.base + "/v2/", repo=None)
                response.close()
                return response

            response = self._retrying("API version check", ping)
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
                f"registry {self.host} asks for credentials ({quoted(scheme, 40)}): `docker login "
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
            msg = f"registry {self.host}: unsupported authentication {quoted(scheme, 40)!r}"
            raise RegistryError(msg)
        query = {"scope": f"repository:{repo}:pull,push"}
        if challenge.get("service"):
            query["service"] = challenge["service"]
        realm = challenge["realm"]
        self._check_realm(realm)
        token_url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        what = f"token for {repo}"

        def fetch() -> tuple[int, bytes]:
            response = self._send("GET", token_url, repo=None, headers={"Authorization": basic})
            if response.status_code != 200:
                raise self._refused(response, what, repo)
            return response.status_code, self._body(response, MAX_JSON_ANSWER, what)

        _, body = self._retrying("token request", fetch)
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError):
            answer = None
        token = None
        if isinstance(answer, dict):
            token = answer.get("token") or answer.get("access_token")
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
