"""Versions: each registry's own version order, and which versions are stable releases.

- PyPI: PEP 440 (``packaging``); a pre-release or development release is not stable;
- npm: semver 2.0 (``semver``, the maintained implementation of the specification npm follows);
  a version with a pre-release part is not;
- Maven: Maven's ComparableVersion order (``univers``' port); a version whose qualifier sorts
  before its own numeric part (alpha, beta, milestone, rc, snapshot) is not;
- Go: semver with a leading ``v`` (a pseudo-version is a pre-release of its base version, so
  it is never stable, and pseudo-versions order by their commit time);
- Node.js: semver, as nodejs.org's index writes versions (``v24.21.0``).

A bound (``upgrade_below``) is a version in the same order; semver's may leave out the minor
and patch parts (``4`` is ``4.0.0``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final, Literal, Protocol

import semver
from packaging.version import InvalidVersion
from packaging.version import Version as PypiVersion

Kind = Literal["pypi", "npm", "maven", "go", "nodejs"]
KINDS: Final[tuple[Kind, ...]] = ("pypi", "npm", "maven", "go", "nodejs")
REGISTRY_NAMES: Final[dict[Kind, str]] = {
    "pypi": "PyPI", "npm": "npm", "maven": "Maven Central", "go": "Go module proxy",
    "nodejs": "nodejs.org",
}  # fmt: skip


class Order(Protocol):
    """An ecosystem's version order: ``key`` (ValueError for no version of its kind) and
    whether a version is a stable release."""

    def key(self, version: str) -> Any: ...

    def bound(self, version: str) -> Any: ...

    def stable(self, version: str) -> bool: ...


class Pep440:
    def key(self, version: str) -> Any:
        try:
            return PypiVersion(version)
        except InvalidVersion:
            raise ValueError(version) from None

    def bound(self, version: str) -> Any:
        return self.key(version)

    def stable(self, version: str) -> bool:
        return not PypiVersion(version).is_prerelease  # dev releases are pre-releases too


class Semver:
    """semver 2.0 (npm's order), with a leading ``v`` taken off (Go, Node.js's index)."""

    def key(self, version: str) -> Any:
        return semver.Version.parse(version.removeprefix("v"))

    def bound(self, version: str) -> Any:
        """A bound may leave out the minor and patch parts: "4" is 4.0.0."""
        return semver.Version.parse(version.removeprefix("v"), optional_minor_and_patch=True)

    def stable(self, version: str) -> bool:
        return semver.Version.parse(version.removeprefix("v")).prerelease is None


class Maven:
    """Maven's ComparableVersion order (univers' port). A version is stable when no qualifier
    puts it before its own numeric part: 2.10.0 and 2.9.0.Final are, 2.10.0-RC1 and
    1.0-SNAPSHOT are not (alpha, beta, milestone, rc and snapshot sort before a release)."""

    def key(self, version: str) -> Any:
        from univers.versions import MavenVersion  # on first use: `list` never needs it

        if not re.match(r"[0-9]", version):
            raise ValueError(version)
        return MavenVersion(version)

    def bound(self, version: str) -> Any:
        return self.key(version)

    def stable(self, version: str) -> bool:
        numeric = re.match(r"[0-9]+(\.[0-9]+)*", version)
        return numeric is not None and bool(self.key(version) >= self.key(numeric.group()))


ORDERS: Final[dict[Kind, Order]] = {
    "pypi": Pep440(), "npm": Semver(), "maven": Maven(), "go": Semver(), "nodejs": Semver(),
}  # fmt: skip


def parses(kind: Kind, version: str) -> bool:
    try:
        ORDERS[kind].key(version)
    except ValueError:
        return False
    return True


def valid_bound(kind: Kind, version: str) -> bool:
    try:
        ORDERS[kind].bound(version)
    except ValueError:
        return False
    return True


def newer(kind: Kind, version: str, than: str) -> bool:
    order = ORDERS[kind]
    return bool(order.key(version) > order.key(than))


def is_pseudo_version(version: str) -> bool:
    """A Go pseudo-version (``v0.0.0-20261030222936-bef5c4ba774d`` and its later forms): a
    commit, not a release."""
    return re.search(r"(^|[-.])[0-9]{14}-[0-9a-f]{12}$", version.partition("+")[0]) is not None


def newest_of(
    kind: Kind, versions: Iterable[str], *, below: str | None = None, stable_only: bool = True
) -> str | None:
    """The newest of ``versions`` in the kind's order: stable ones only, below ``below``;
    versions of no kind's form are left out."""
    order = ORDERS[kind]
    bound = order.bound(below) if below else None
    best: tuple[Any, str] | None = None
    for version in versions:
        try:
            key = order.key(version)
            if stable_only and not order.stable(version):
                continue
        except ValueError:
            continue
        if bound is not None and not key < bound:
            continue
        if best is None or key > best[0]:
            best = (key, version)
    return best[1] if best else None
