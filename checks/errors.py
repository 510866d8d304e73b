"""Exceptions raised by the checks package (one root: ``ChecksError``)."""

from __future__ import annotations


class ChecksError(Exception):
    """Root of every error the checks package raises."""


class CheckDefinitionError(ChecksError):
    """A check is declared wrongly: bad signature, bad name, bad timeout, not decorated."""


class CheckLoadError(ChecksError):
    """A check reference cannot be resolved: malformed, module not importable, no such name."""
