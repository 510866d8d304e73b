"""Exceptions raised by the wrapper; ``WrapperError`` is the root of them all.

The split that matters to the pilot is whose fault a failure is: ``PayloadStartError`` and
``UnsafeSandbox`` are the user's (the job fails), ``RuntimeFailure`` is the node's (the job
may be rescheduled elsewhere).
"""

from __future__ import annotations


class WrapperError(Exception):
    """Root of every error the wrapper raises."""


class SandboxError(WrapperError):
    """A sandbox archive could not be written or read."""


class UnsafeSandbox(SandboxError):
    """An archive member was refused; nothing was written outside the destination."""

    def __init__(self, member: str, reason: str) -> None:
        super().__init__(f"{member}: {reason}")
        self.member = member
        self.reason = reason


class OutputTreeTooLarge(SandboxError):
    """The payload left a tree too deep or too big to walk for its output sandbox: the
    job's fault."""


class ChecksumMismatch(SandboxError):
    """Downloaded bytes do not hash to the digest they were asked for by."""

    def __init__(self, expected_sha256: str, actual_sha256: str) -> None:
        super().__init__(f"expected sha256 {expected_sha256}, got {actual_sha256}")
        self.expected_sha256 = expected_sha256
        self.actual_sha256 = actual_sha256


class TransportUnreachable(WrapperError):
    """The sandbox transport could not reach the other side after its own retries: an
    output archive is kept to be sent later (``JobOutcome.output_pending``)."""


class PayloadStartError(WrapperError):
    """The payload cannot be started for a reason that is the job's own fault."""

    def __init__(self, executable: str, reason: str) -> None:
        super().__init__(f"{executable}: {reason}")
        self.executable = executable
        self.reason = reason


class ExecutableNotFound(PayloadStartError):
    """The executable is neither in the work dir nor on PATH."""

    def __init__(self, executable: str) -> None:
        super().__init__(executable, "not found in the work dir or on PATH")


class ImageNotAllowed(WrapperError):
    """The job named a container image outside the locations the site allows: the job's
    fault (``wrapper.images``)."""

    def __init__(self, image: str, reason: str) -> None:
        super().__init__(f"{image}: {reason}")
        self.image = image
        self.reason = reason


class RuntimeFailure(WrapperError):
    """The runtime itself failed (not the payload): an infrastructure error."""


class RuntimeUnavailable(RuntimeFailure):
    """The requested runtime is missing, not allowed, or cannot run this job."""


class ContainerImageNotFound(RuntimeFailure):
    """The job's container image is missing or unreadable on this node."""

    def __init__(self, image: str, reason: str) -> None:
        super().__init__(f"{image}: {reason}")
        self.image = image
        self.reason = reason


class ContainerRuntimeFailed(RuntimeFailure):
    """The container runtime itself failed (bind, namespace, its own error): the runtime
    is suspect on this node, not the job."""
