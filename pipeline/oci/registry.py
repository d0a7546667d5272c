"""Registry: the parts of the OCI distribution protocol that publishing needs.

HEAD a blob and upload it only when missing; GET a blob into a file (checked against its
digest); HEAD, GET and PUT manifests by digest or tag. The
HTTP side (retries, authentication, failures) is transport.py; credentials are credentials.py.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urljoin

from .. import log
from ..digests import CHUNK, sha256_bytes
from ..errors import RegistryError, UsageError
from .credentials import Credentials
from .transport import (
    _CONNECTION_ERRORS,
    RetryPolicy,
    TransferStats,
    Transport,
    _Transient,
    default_scheme,
    origin,
)


def without_userinfo(text: str) -> str:
    """``text`` without anything before an ``@`` in its host part (``u:pw@host/ns`` →
    ``host/ns``): what to show of a reference that carried credentials."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    host, slash, path = rest.partition("/")
    return f"{scheme}{sep}{host.rpartition('@')[2]}{slash}{path}"


__all__ = ["Credentials", "Registry", "RegistryRef", "RetryPolicy", "TransferStats"]

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY: Final = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT: Final = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))


_HOST: Final = re.compile(
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
)


@dataclass(frozen=True, kw_only=True)
class RegistryRef:
    """``host[:port]/namespace`` as given to ``--registry``; http only for loopback hosts.
    ``parse`` is the one reader of such a reference (the command line's, the mirrors')."""

    host: str
    namespace: str
    scheme: str

    @classmethod
    def parse(cls, text: str) -> RegistryRef:
        scheme = ""
        rest = text.strip()
        if "://" in rest:
            scheme, _, rest = rest.partition("://")
        host, _, namespace = rest.strip("/").partition("/")
        if "@" in host:
            # user:password@host would put the password in logs, reports and process lists;
            # what precedes the @ is never echoed.
            msg = (
                "--registry: credentials do not belong in the registry name (credentials in the "
                "registry reference are refused: they would show in logs and reports); give "
                "REGISTRY/NAMESPACE and set LAMBDA_IMAGES_REGISTRY_USER and "
                "LAMBDA_IMAGES_REGISTRY_PASSWORD (or `docker login`)"
            )
            raise UsageError(msg)
        found = _HOST.fullmatch(host)
        if not found or not 0 < int(found.group("port") or 443) < 65536:
            shown, name = (x.encode("unicode_escape").decode() for x in (text, host))
            msg = (
                f"--registry {shown!r}: {name!r} is not a host name with an optional port "
                "(1-65535); expected REGISTRY/NAMESPACE, for example public.ecr.aws/lambda or "
                "127.0.0.1:5000/lambda"
            )
            raise RegistryError(msg)
        if not host or not namespace or not re.fullmatch(r"[a-z0-9]+([._/-][a-z0-9]+)*", namespace):
            msg = (
                f"--registry {text!r}: expected REGISTRY/NAMESPACE with a lower-case namespace, "
                "for example public.ecr.aws/lambda or 127.0.0.1:5000/lambda"
            )
            raise RegistryError(msg)
        if scheme not in ("", "http", "https"):
            raise RegistryError(f"--registry {text!r}: scheme must be http or https")
        return cls(host=host, namespace=namespace, scheme=scheme or default_scheme(host))

    def repository(self, name: str) -> str:
        return f"{self.namespace}/{name}"

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}"


class Registry(Transport):
    """The OCI distribution protocol publishing needs: blobs (HEAD, then mount or upload when
    missing) and manifests (HEAD, GET, PUT by digest or tag), one registry host, repositories
    per call."""

    def __init__(self, host: str, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        # digest → repositories of this registry known to hold it (seen or pushed), so that a
        # layer shared by two families is mounted into the second, not uploaded again.
        self._blob_repos: dict[str, set[str]] = {}

    def ping(self) -> None:
        """GET /v2/: the registry answers (with or without asking for credentials), or a
        RegistryError says it is unreachable after every retry."""
        self._request("GET", "/v2/", repo=None, what="GET /v2/", ok=(200, 401))

    # --- blobs -----------------------------------------------------------------------------------

    def blob_exists(self, repo: str, digest: str) -> bool:
        response = self._request(
            "HEAD",
            f"/v2/{repo}/blobs/{digest}",
            repo=repo,
            what=f"HEAD blob {digest[:19]}",
            ok=(200, 307, 404),
        )
        if response.status_code == 404:
            return False
        self._check_digest(response, repo, digest)
        self._seen(repo, digest)
        return True

    def push_blob(self, repo: str, digest: str, path: Path) -> bool:
        """Upload ``path`` as ``digest`` unless the registry has it; True when uploaded."""
        size = path.stat().st_size
        return self._upload(repo, digest, size, lambda: path.open("rb"))

    def push_bytes(self, repo: str, data: bytes) -> str:
        """Upload a small blob (an image config) held in memory; return its digest."""
        digest = sha256_bytes(data)
        self._upload(repo, digest, len(data), lambda: data)
        return digest

    def fetch_blob(self, repo: str, digest: str, dest: Path) -> None:
        """Download a blob into ``dest``, streamed; a body whose sha256 is not ``digest`` is
        refused and nothing is left at ``dest``. A dropped download is retried from the start."""
        what = f"GET blob {digest[:19]}"
        if repo not in self._auth:
            self._authenticate(repo)
        url = f"{self.base}/v2/{repo}/blobs/{digest}"
        part = dest.with_name(f".{dest.name}.part")

        def attempt() -> None:
            response = self._send("GET", url, repo=repo, stream=True)
            with response:
                self._expired(response, repo)
                if response.status_code != 200:
                    raise self._refused(response, what, repo)
                hasher = hashlib.sha256()
                try:
                    with part.open("wb") as out:
                        for chunk in response.iter_content(CHUNK):
                            hasher.update(chunk)
                            out.write(chunk)
                except _CONNECTION_ERRORS as exc:
                    raise _Transient(f"{type(exc).__name__} while reading {what}") from None
            if f"sha256:{hasher.hexdigest()}" != digest:
                part.unlink(missing_ok=True)
                msg = (
                    f"registry {self.host}: blob {digest} of {repo} arrived with sha256 "
                    f"{hasher.hexdigest()}; refused"
                )
                raise RegistryError(msg)
            part.replace(dest)

        try:
            self._retrying(what, attempt)
        finally:
            part.unlink(missing_ok=True)

    def _seen(self, repo: str, digest: str) -> None:
        self._blob_repos.setdefault(digest, set()).add(repo)

    def _check_digest(self, response: Any, repo: str, digest: str) -> None:
        """A registry that names a different digest for a blob than the one asked for is
        serving (or stored) other bytes: never build a manifest on that."""
        said = response.headers.get("Docker-Content-Digest")
        if said and said != digest:
            msg = (
                f"registry {self.host}: blob {digest} in {repo} is reported as {said}; the "
                "registry holds other bytes under that name, nothing was published on top of it"
            )
            raise RegistryError(msg)

    def _upload(self, repo: str, digest: str, size: int, body: Callable[[], Any]) -> bool:
        """Upload a blob unless the repository has it: mounted from another repository of
        this registry that has it (no bytes sent), else POST a session and PUT it whole."""
        if self.blob_exists(repo, digest):
            self.stats.blobs_present += 1
            return False
        what = f"upload blob {digest[:19]} ({log.human_size(size)})"
        sources = sorted(self._blob_repos.get(digest, set()) - {repo})

        def attempt() -> bool:
            # A failed PUT leaves a dead upload session: it is deleted, and a retry starts anew.
            query = f"?{urlencode({'mount': digest, 'from': sources[0]})}" if sources else ""
            start = self._send("POST", self.base + f"/v2/{repo}/blobs/uploads/{query}", repo=repo)
            self._expired(start, repo)
            if sources and start.status_code == 201:
                self._check_digest(start, repo, digest)
                return True  # mounted
            if start.status_code != 202 or "Location" not in start.headers:
                raise self._refused(start, what, repo)
            location = urljoin(self.base + "/", start.headers["Location"])
            if origin(location) != self.origin:
                self._abandon(location, repo)
                msg = (
                    f"registry {self.host}: {what}: the upload session is on another host; "
                    "refused (the blob and the credentials stay with the registry)"
                )
                raise RegistryError(msg)
            url = location + ("&" if "?" in location else "?") + urlencode({"digest": digest})
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            try:
                done = self._send("PUT", url, repo=repo, headers=headers, body=body)
            except BaseException:
                self._abandon(location, repo)
                raise
            if done.status_code not in (201, 204):
                self._abandon(location, repo)
                self._expired(done, repo)
                raise self._refused(done, what, repo)
            self._check_digest(done, repo, digest)
            return False

        if repo not in self._auth:
            self._authenticate(repo)
        mounted = self._retrying(what, attempt)
        self._seen(repo, digest)
        if mounted:
            self.stats.blobs_mounted += 1
            self.stats.bytes_mounted += size
            log.detail(f"    {repo}: mounted {digest[:19]} from {sources[0]}")
            return False
        self.stats.blobs_uploaded += 1
        self.stats.bytes_uploaded += size
        return True

    def _abandon(self, location: str, repo: str) -> None:
        """DELETE an upload session that will not be finished (best effort: the registry
        expires it anyway; a session on another host is only forgotten)."""
        if origin(location) != self.origin:
            return
        try:
            self._send("DELETE", location, repo=repo)
        except Exception:  # clean-up must not hide the failure that caused it
            log.detail(f"    {self.host}: could not delete an abandoned upload session")

    # --- manifests -------------------------------------------------------------------------------

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """The digest a tag (or digest) resolves to, or None when the registry has none."""
        response = self._request(
            "HEAD",
            f"/v2/{repo}/manifests/{reference}",
            repo=repo,
            what=f"HEAD manifest {reference}",
            ok=(200, 404),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        body, _ = self.get_manifest(repo, reference)
        return sha256_bytes(body)

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str]:
        response = self._request(
            "GET",
            f"/v2/{repo}/manifests/{reference}",
            repo=repo,
            what=f"GET manifest {reference}",
            ok=(200,),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        return response.content, response.headers.get("Content-Type", "")

    def get_blob(self, repo: str, digest: str) -> bytes:
        """A small blob (an SBOM), checked against its digest."""
        response = self._request(
            "GET", f"/v2/{repo}/blobs/{digest}", repo=repo, what=f"GET blob {digest[:19]}",
            ok=(200,),
        )  # fmt: skip
        if sha256_bytes(response.content) != digest:
            raise RegistryError(f"registry {self.host}: blob {digest} in {repo} has other bytes")
        return response.content

    def referrers(self, repo: str, digest: str) -> list[dict[str, Any]] | None:
        """The referrers API's list for ``digest`` (OCI distribution 1.1), or None when the
        registry does not answer it (then the referrers tag scheme applies)."""
        response = self._request(
            "GET",
            f"/v2/{repo}/referrers/{digest}",
            repo=repo,
            what=f"GET referrers {digest[:19]}",
            ok=(200, 400, 404, 405),
            headers={"Accept": OCI_INDEX},
        )
        if response.status_code != 200:
            return None
        if not response.headers.get("Content-Type", "").startswith(OCI_INDEX):
            return None
        try:
            listed = response.json().get("manifests")
        except ValueError:
            return None
        return [m for m in listed or [] if isinstance(m, dict)]

    def list_tags(self, repo: str) -> list[str]:
        """Every tag of ``repo`` (none when the repository does not exist yet), following the
        ``Link`` header of paginated answers."""
        tags: list[str] = []
        path: str | None = f"/v2/{repo}/tags/list"
        while path:
            response = self._request("GET", path, repo=repo, what="GET tag list", ok=(200, 404))
            if response.status_code == 404:
                return tags
            tags += response.json().get("tags") or []
            path = response.links.get("next", {}).get("url")
        return tags

    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or its digest; check the registry stored these bytes."""
        digest = sha256_bytes(body)
        response = self._request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            repo=repo,
            what=f"PUT manifest {reference}",
            ok=(200, 201, 202),
            headers={"Content-Type": media_type},
            body=lambda: body,
        )
        stored = response.headers.get("Docker-Content-Digest", digest)
        if stored != digest:
            msg = (
                f"registry {self.host}: {repo}:{reference} was stored as {stored}, not {digest}; "
                "the registry rewrote the manifest"
            )
            raise RegistryError(msg)
        self.stats.manifests_written += 1
        return digest
