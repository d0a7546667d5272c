"""Container image formats: ``docker save`` archives, layer tars, and what a registry is sent.

Nothing here knows about runtimes or the work folder; the snapshot, conformance and publish
stages share these readers and writers so that each format has exactly one of them.
"""
