"""The errors a user can act on.

Only the CLI catches these: it prints the message on one line and exits with ``return_code``,
which is unique per kind (the README lists them; a test checks each once). Anything else that
escapes is a bug and keeps its traceback (exit 1).
"""

from __future__ import annotations

from typing import Any


class LambdaImagesError(Exception):
    """Base class: a failure explained by ``str(self)``, with the exit status to use."""

    return_code = 1


class UsageError(LambdaImagesError):
    """The command line is wrong: an unknown runtime or option, a bad value (click's usage
    errors exit with the same code)."""

    return_code = 2


class ConfigurationError(LambdaImagesError):
    """runtimes.yaml, the lock file or another input file is malformed; names file, line and
    field."""

    return_code = 11


class StaleError(LambdaImagesError):
    """Committed generated files (Dockerfiles, README tables) differ from what would be made."""

    return_code = 13


class InputError(LambdaImagesError):
    """A pinned input is missing from the lock file, or its checksum does not match."""

    return_code = 3


class EngineError(LambdaImagesError):
    """The Docker Engine is unreachable, or a build/run step failed inside it."""

    return_code = 4


class BaseImageError(LambdaImagesError):
    """The operating-system base could not be produced (mmdebstrap, pull by digest)."""

    return_code = 12


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


class InvocationError(LambdaImagesError):
    """A local invocation failed: the function raised, timed out, or its runtime exited."""

    return_code = 9


class ConformanceError(LambdaImagesError):
    """An image breaks one of Lambda's container rules; it must not be published."""

    return_code = 10

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report  # the conformance Report, for --json output


class OutdatedError(LambdaImagesError):
    """A built image holds a package for which its OS archives have a newer version."""

    return_code = 14


def failure_reason(exc: Exception) -> str:
    """What to record for a runtime that failed. Our own errors are written to be shown; any
    other exception is a bug whose text may quote a request (headers and all), so only its
    type is kept."""
    if isinstance(exc, LambdaImagesError):
        return str(exc)
    return f"internal error ({type(exc).__name__}); run again with LAMBDA_IMAGES_DEBUG=1"
