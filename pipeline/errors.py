"""The errors a user can act on.

Only the CLI catches these: it prints the message on one line and exits with ``return_code``.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class LambdaImagesError(Exception):
    """Base class: a failure explained by ``str(self)``, with the exit status to use."""

    return_code = 1


class ConfigurationError(LambdaImagesError):
    """runtimes.yaml (or another input file) is malformed; names file, line and field."""

    return_code = 2


class UsageError(LambdaImagesError):
    """The command line asks for something that does not exist (unknown runtime, arch…)."""

    return_code = 2


class InputError(LambdaImagesError):
    """A pinned input is missing from the lock file, or its checksum does not match."""

    return_code = 3


class EngineError(LambdaImagesError):
    """The Docker Engine is unreachable, or a build/run step failed inside it."""

    return_code = 4


class BaseImageError(LambdaImagesError):
    """The operating-system base could not be produced (mmdebstrap, pull by digest)."""

    return_code = 4


class SnapshotError(LambdaImagesError):
    """An image could not be exported or written as a snapshot."""

    return_code = 5


class BranchError(LambdaImagesError):
    """A git or git-lfs step failed, or a push was refused (moved branch, forbidden name)."""

    return_code = 6


class RegistryError(LambdaImagesError):
    """A registry refused a request (credentials, permissions, missing repository) or kept
    failing after every retry."""

    return_code = 7


class PublishError(LambdaImagesError):
    """One or more runtimes could not be published; the report says which and why."""

    return_code = 8
