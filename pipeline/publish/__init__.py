"""Publish: a runtime's snapshots as a release in a registry, in four peer modules.

- ``documents``: the registry's documents made from the work folder (gzipped layer blobs, image
  configs, manifests, the index, SBOM artifacts), reproducibly;
- ``tags``: which tags a release writes (dated and moving), and the rule that dated tags never move;
- ``notes``: what changed since the previous release (from the SBOMs attached to it);
- ``push``: putting blobs, manifests, SBOM referrers and tags into a registry;
- ``report``: what a publish did, per runtime and mirror, as data.

The order of a publish (everything in the registry before any tag moves, the branch last) and the
loop over runtimes and mirrors are the conductor's: orchestrate/release.py.
"""
