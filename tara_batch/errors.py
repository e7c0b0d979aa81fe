"""Exceptions shared across layers."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration mistake, raised at start. Names the field and says how to fix it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"config error in `{field}`: {message}")

    def __reduce__(self):  # picklable, so an error raised inside a Ray worker reaches the driver intact
        return (type(self), (self.field, self.message))


class InputError(ValueError):
    """A bad input (missing path, empty listing, unreadable manifest) detected before the job runs."""


class JobAborted(RuntimeError):
    """A run stopped on purpose (e.g. failure rate over the limit). Rows committed so far are kept."""
