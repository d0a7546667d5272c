"""Release notes: what changed since the previous release, read from the SBOM attached to its
``<tag>.<stamp>-<arch>`` manifest and compared with the new one; as the branch commit's message
and the branch README's change history."""

from __future__ import annotations

import json
from typing import Any

from .. import sbom
from ..matrix import Runtime
from ..oci import referrers
from ..oci.registry import Registry
from ..text import markdown_code, plain_line
from .tags import release_stamps


def previous_sbom(registry: Registry, repo: str, manifest: str) -> dict[str, Any] | None:
    """The SBOM attached to ``manifest`` (found as ``oras discover`` finds it), or None."""
    for digest in referrers.discover(registry, repo, manifest, sbom.MEDIA_TYPE):
        blob = referrers.artifact_content(registry, repo, digest)
        if blob is not None:
            try:
                parsed = json.loads(blob)
            except (ValueError, RecursionError):  # the registry's bytes: maybe no SBOM at all
                continue
            if isinstance(parsed, dict):
                return parsed
    return None


def release_changes(
    runtime: Runtime, registry: Registry, repo: str, stamp: str, sboms: dict[str, bytes]
) -> dict[str, sbom.Changes]:
    """Per arch, what changed since the newest release dated before ``stamp``: its
    ``<tag>.<stamp>-<arch>`` manifest's SBOM against the new one. Dated tags never move and
    their SBOMs never change, so a republish of a release computes the same changes."""
    older = [s for s in release_stamps(runtime, registry.list_tags(repo)) if s < stamp]
    previous = older[0] if older else None
    changes = {}
    for arch, document in sboms.items():
        new = json.loads(document)
        if previous is None:
            changes[arch] = sbom.diff(None, new, None)
            continue
        manifest = registry.manifest_digest(repo, f"{runtime.tag}.{previous}-{arch}")
        if manifest is None:
            changes[arch] = sbom.Changes(previous=previous, note=f"first release for {arch}")
            continue
        old = previous_sbom(registry, repo, manifest)
        if old is None:
            note = f"release {previous} has no SBOM attached; what changed is not known"
            changes[arch] = sbom.Changes(previous=previous, note=note)
            continue
        changes[arch] = sbom.diff(old, new, previous)
    return changes


def changelog(stamp: str, changes: dict[str, sbom.Changes]) -> list[str]:
    """The release's changes as plain lines: the commit message body and the README's."""
    previous = next((c.previous for c in changes.values() if c.previous), None)
    if all(c.previous is None for c in changes.values()):
        head = f"Release {stamp}: first release."
    else:
        head = f"Release {stamp}, changes since {previous}:"
    lines = [head]
    for arch, change in changes.items():
        lines += ["", f"{arch}:", *(f"  {line}" for line in change.lines())]
    return lines


def history_markdown(stamp: str, changes: dict[str, sbom.Changes]) -> list[str]:
    """The README's change history section: this release against the one before it. Package
    names and versions come from inside the image (or a registry's SBOM): each change is one
    code span (text.markdown_code), shown as it is and never read as markdown or HTML."""
    lines = changelog(stamp, changes)
    out = [f"### {plain_line(lines[0].rstrip(':'))}"]
    for line in lines[1:]:
        if not line:
            out.append("")
        elif line.startswith("  "):
            out.append(f"- {markdown_code(line.strip())}")
        else:
            out.append(plain_line(line))  # an architecture's name, ours
    return out
