"""Registry: the parts of the OCI distribution protocol that publishing needs.

HEAD a blob and upload it only when missing; GET a blob into a file (checked against its
digest); HEAD, GET and PUT manifests by digest or tag. The
HTTP side (retries, authentication, failures) is transport.py; credentials are credentials.py.

What a registry answers is checked before it is used: a manifest is at most 4 MiB, the bytes of
the digest it was asked by (or of the ``Docker-Content-Digest`` it names for a tag), JSON of the
shape the specification gives, with every descriptor's digest a ``sha256:<hex>``; a blob is the
bytes of its digest and no longer than its descriptor says; a tag list is followed through at
most MAX_TAG_PAGES pages of the same registry, never twice through one. A reference or digest
from a registry is never used as a file name, nor in a URL before it is checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urljoin

from .. import log, progress
from ..digests import sha256_bytes
from ..errors import RegistryError, UsageError
from .credentials import Credentials
from .transport import (
    MAX_JSON_ANSWER,
    RetryPolicy,
    TransferStats,
    Transport,
    _discard,
    default_scheme,
    origin,
    quoted,
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
INDEX_TYPES: Final = (OCI_INDEX, DOCKER_LIST)

# The distribution specification's grammar (only sha256 digests are used here).
DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}")
TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
MAX_MANIFEST: Final = 4 * 1024 * 1024  # what registries accept (distribution spec: "at least")
MAX_SMALL_BLOB: Final = 64 * 1024 * 1024  # an SBOM, read into memory
MAX_BLOB: Final = 10 * 1024**3  # a layer, streamed to a file: Lambda's whole image limit
MAX_TAG_PAGES: Final = 1000


def is_digest(text: object) -> bool:
    return isinstance(text, str) and DIGEST.fullmatch(text) is not None


def _json(body: bytes) -> Any:
    """A JSON document; ValueError for anything else (not UTF-8, not JSON, nested too deeply)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def is_descriptor(value: Any) -> bool:
    """A content descriptor: a mapping with a sha256 digest and a non-negative integer size."""
    return (
        isinstance(value, dict)
        and is_digest(value.get("digest"))
        and type(value.get("size")) is int
        and value["size"] >= 0
        and isinstance(value.get("mediaType", ""), str)
    )


def manifest_problem(data: Any) -> str | None:
    """Why ``data`` is not an image manifest or index of schema version 2, or None."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    if data.get("schemaVersion") != 2:
        return "schemaVersion is not 2"
    if not isinstance(data.get("mediaType", ""), str):
        return "mediaType is not a string"
    if "manifests" not in data and "layers" not in data:
        return "neither manifests nor layers"
    for key in ("manifests", "layers"):
        items = data.get(key, [])
        if not isinstance(items, list):
            return f"{key} is not a list"
        for number, item in enumerate(items):
            if not is_descriptor(item):
                return f"{key}[{number}] is no descriptor with a sha256 digest and a size"
            if not isinstance(item.get("platform", {}), dict):
                return f"{key}[{number}].platform is not an object"
    for key in ("config", "subject"):
        if key in data and not is_descriptor(data[key]):
            return f"{key} is no descriptor with a sha256 digest and a size"
    return None


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

    def _reference(self, repo: str, reference: str) -> str:
        """``reference`` when it is a tag or a sha256 digest; a RegistryError otherwise (it
        would go into a URL's path)."""
        if is_digest(reference) or TAG.fullmatch(reference):
            return reference
        msg = f"registry {self.host}: {repo}: {quoted(reference, 80)!r} is no tag or sha256 digest"
        raise RegistryError(msg)

    def blob_exists(self, repo: str, digest: str) -> bool:
        self._reference(repo, digest)
        answer = self._request(
            "HEAD",
            f"/v2/{repo}/blobs/{digest}",
            repo=repo,
            what=f"HEAD blob {digest[:19]}",
            ok=(200, 307, 404),
        )
        if answer.status == 404:
            return False
        self._check_digest(answer.headers, repo, digest)
        self._seen(repo, digest)
        return True

    def push_blob(self, repo: str, digest: str, path: Path) -> bool:
        """Upload ``path`` as ``digest`` unless the registry has it; True when uploaded. The
        upload's progress is shown from its first byte (a blob the registry has sends none)."""
        size = path.stat().st_size
        with contextlib.ExitStack() as shown:
            meter: progress.Meter | None = None

            def body() -> Any:
                nonlocal meter
                if meter is None:
                    title = f"upload {digest[7:19]} to {self.host}/{repo}"
                    meter = shown.enter_context(progress.transfer(title, size))
                return meter.reading(path.open("rb"))

            return self._upload(repo, digest, size, body)

    def push_bytes(self, repo: str, data: bytes) -> str:
        """Upload a small blob (an image config) held in memory; return its digest."""
        digest = sha256_bytes(data)
        self._upload(repo, digest, len(data), lambda: data)
        return digest

    def fetch_blob(self, repo: str, digest: str, dest: Path, size: int | None = None) -> None:
        """Download a blob into ``dest``, streamed; a body whose sha256 is not ``digest``, or
        that is longer than ``size`` (its descriptor's; MAX_BLOB when not given), is refused
        and nothing is left at ``dest``. A dropped download is retried from the start."""
        self._reference(repo, digest)
        what = f"GET blob {digest[:19]}"
        limit = MAX_BLOB if size is None else min(size, MAX_BLOB)
        if repo not in self._auth:
            self._authenticate(repo)
        url = f"{self.base}/v2/{repo}/blobs/{digest}"
        part = dest.with_name(f".{dest.name}.part")

        def attempt() -> None:
            response = self._send("GET", url, repo=repo)
            with response:
                self._expired(response, repo)
                if response.status_code != 200:
                    raise self._refused(response, what, repo)
                hasher = hashlib.sha256()
                received = 0
                with part.open("wb") as out:
                    for chunk in self._chunks(response, what):
                        received += len(chunk)
                        if received > limit:
                            raise self._too_long(what, limit)
                        hasher.update(chunk)
                        out.write(chunk)
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

    def _check_digest(self, headers: Any, repo: str, digest: str) -> None:
        """A registry that names a different digest for a blob than the one asked for is
        serving (or stored) other bytes: never build a manifest on that."""
        said = headers.get("Docker-Content-Digest")
        if said and said != digest:
            msg = (
                f"registry {self.host}: blob {digest} in {repo} is reported as "
                f"{quoted(said, 80)}; the registry holds other bytes under that name, nothing "
                "was published on top of it"
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
                _discard(start)
                self._check_digest(start.headers, repo, digest)
                return True  # mounted
            if start.status_code != 202 or "Location" not in start.headers:
                raise self._refused(start, what, repo)
            _discard(start)
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
            _discard(done)
            self._check_digest(done.headers, repo, digest)
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
            _discard(self._send("DELETE", location, repo=repo))
        except Exception:  # clean-up must not hide the failure that caused it
            log.detail(f"    {self.host}: could not delete an abandoned upload session")

    # --- manifests -------------------------------------------------------------------------------

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """The digest a tag (or digest) resolves to, or None when the registry has none."""
        self._reference(repo, reference)
        answer = self._request(
            "HEAD",
            f"/v2/{repo}/manifests/{reference}",
            repo=repo,
            what=f"HEAD manifest {reference}",
            ok=(200, 404),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        if answer.status == 404:
            return None
        digest = answer.headers.get("Docker-Content-Digest")
        if digest and not is_digest(digest):
            msg = (
                f"registry {self.host}: {repo}:{reference} is reported as {quoted(digest, 80)!r}, "
                "which is no sha256 digest; refused"
            )
            raise RegistryError(msg)
        if digest:
            if is_digest(reference) and digest != reference:
                raise self._other_bytes(repo, reference, digest)
            return digest
        body, _ = self.get_manifest(repo, reference)
        return sha256_bytes(body)

    def _other_bytes(self, repo: str, reference: str, actual: str) -> RegistryError:
        return RegistryError(
            f"registry {self.host}: the manifest {repo}:{reference} is {actual}; the registry "
            "answered other bytes than the ones asked for, refused"
        )

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str]:
        """A manifest's bytes and media type, at most MAX_MANIFEST bytes, checked: by digest,
        its sha256 is that digest; by tag, it is the digest the registry names for it (when
        it names one)."""
        self._reference(repo, reference)
        answer = self._request(
            "GET",
            f"/v2/{repo}/manifests/{reference}",
            repo=repo,
            what=f"GET manifest {reference}",
            ok=(200,),
            headers={"Accept": MANIFEST_ACCEPT},
            limit=MAX_MANIFEST,
        )
        actual = sha256_bytes(answer.body)
        said = answer.headers.get("Docker-Content-Digest")
        if is_digest(reference) and actual != reference:
            raise self._other_bytes(repo, reference, actual)
        if said and said != actual:
            msg = (
                f"registry {self.host}: {repo}:{reference} is reported as {quoted(said, 80)} "
                f"but its bytes are {actual}; refused"
            )
            raise RegistryError(msg)
        return answer.body, answer.headers.get("Content-Type", "")

    def manifest_json(self, repo: str, reference: str) -> tuple[str, str, dict[str, Any]]:
        """A manifest checked as ``get_manifest`` checks it and parsed: its digest, its media
        type (the document's own, else the answer's) and its content. A RegistryError when it
        is not JSON or not shaped as an image manifest or index (``manifest_problem``)."""
        body, media_type = self.get_manifest(repo, reference)
        try:
            data = _json(body)
        except ValueError as exc:
            msg = f"registry {self.host}: the manifest {repo}:{reference} is not JSON ({exc})"
            raise RegistryError(quoted(msg, 400)) from None
        problem = manifest_problem(data)
        if problem is not None:
            msg = f"registry {self.host}: the manifest {repo}:{reference} is malformed: {problem}"
            raise RegistryError(msg)
        kind = data.get("mediaType") or media_type
        return sha256_bytes(body), str(kind), data

    def image_manifest(
        self, repo: str, reference: str, architecture: str
    ) -> tuple[str, dict[str, Any]]:
        """The digest and content of the image manifest ``reference`` names for
        ``architecture`` (Docker's name, ``amd64``): an index is followed to that
        architecture's entry, whose manifest is checked against the entry's digest."""
        digest, kind, data = self.manifest_json(repo, reference)
        if kind not in INDEX_TYPES and "manifests" not in data:
            return digest, data
        for entry in data.get("manifests", []):
            if entry.get("platform", {}).get("architecture") == architecture:
                child, child_kind, child_data = self.manifest_json(repo, entry["digest"])
                if child_kind in INDEX_TYPES or "layers" not in child_data:
                    msg = (
                        f"registry {self.host}: {repo}:{reference} names an index, not an image "
                        f"manifest, for {architecture}; refused"
                    )
                    raise RegistryError(msg)
                return child, child_data
        msg = f"registry {self.host}: {repo}:{reference} has no {architecture} manifest"
        raise RegistryError(msg)

    def get_blob(self, repo: str, digest: str, limit: int = MAX_SMALL_BLOB) -> bytes:
        """A small blob (an SBOM) read into memory, at most ``limit`` bytes, checked against
        its digest."""
        self._reference(repo, digest)
        answer = self._request(
            "GET", f"/v2/{repo}/blobs/{digest}", repo=repo, what=f"GET blob {digest[:19]}",
            ok=(200,), limit=limit,
        )  # fmt: skip
        if sha256_bytes(answer.body) != digest:
            raise RegistryError(f"registry {self.host}: blob {digest} in {repo} has other bytes")
        return answer.body

    def referrers(self, repo: str, digest: str) -> list[dict[str, Any]] | None:
        """The referrers API's list for ``digest`` (OCI distribution 1.1), or None when the
        registry does not answer it (then the referrers tag scheme applies). Entries that are
        no descriptor are left out."""
        self._reference(repo, digest)
        answer = self._request(
            "GET",
            f"/v2/{repo}/referrers/{digest}",
            repo=repo,
            what=f"GET referrers {digest[:19]}",
            ok=(200, 400, 404, 405),
            headers={"Accept": OCI_INDEX},
            limit=MAX_MANIFEST,
        )
        if answer.status != 200:
            return None
        if not answer.headers.get("Content-Type", "").startswith(OCI_INDEX):
            return None
        try:
            data = _json(answer.body)
        except ValueError:
            return None
        listed = data.get("manifests") if isinstance(data, dict) else None
        return [m for m in listed if is_descriptor(m)] if isinstance(listed, list) else []

    def list_tags(self, repo: str) -> list[str]:
        """Every tag of ``repo`` (none when the repository does not exist yet), following the
        ``Link`` header of paginated answers: on this registry, each page once, at most
        MAX_TAG_PAGES of them. A tag that is no tag name is refused."""
        tags: list[str] = []
        url: str | None = urljoin(self.base, f"/v2/{repo}/tags/list")
        seen: set[str] = set()
        while url:
            if url in seen or len(seen) >= MAX_TAG_PAGES or origin(url) != self.origin:
                why = (
                    "points back to a page already read"
                    if url in seen
                    else f"goes on past {MAX_TAG_PAGES} pages"
                    if len(seen) >= MAX_TAG_PAGES
                    else "points to another host"
                )
                msg = f"registry {self.host}: the tag list of {repo} {why}; refused"
                raise RegistryError(msg)
            seen.add(url)
            answer = self._request(
                "GET", url, repo=repo, what="GET tag list", ok=(200, 404), limit=MAX_JSON_ANSWER
            )
            if answer.status == 404:
                return tags
            try:
                data = _json(answer.body)
            except ValueError as exc:
                msg = f"registry {self.host}: the tag list of {repo} is not JSON ({exc})"
                raise RegistryError(quoted(msg, 400)) from None
            page = data.get("tags") if isinstance(data, dict) else None
            page = [] if page is None else page
            if not isinstance(page, list) or not all(
                isinstance(t, str) and TAG.fullmatch(t) for t in page
            ):
                msg = f"registry {self.host}: the tag list of {repo} holds other things than tags"
                raise RegistryError(msg)
            tags += page
            url = urljoin(url, answer.next_url) if answer.next_url else None
        return tags

    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or its digest; check the registry stored these bytes."""
        self._reference(repo, reference)
        digest = sha256_bytes(body)
        answer = self._request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            repo=repo,
            what=f"PUT manifest {reference}",
            ok=(200, 201, 202),
            headers={"Content-Type": media_type},
            body=lambda: body,
        )
        stored = answer.headers.get("Docker-Content-Digest", digest)
        if stored != digest:
            msg = (
                f"registry {self.host}: {repo}:{reference} was stored as {quoted(stored, 80)}, "
                f"not {digest}; the registry rewrote the manifest"
            )
            raise RegistryError(msg)
        self.stats.manifests_written += 1
        return digest
