"""The one error of the run-folder package."""

from __future__ import annotations


class RunError(RuntimeError):
    """A run folder is missing or unusable."""
