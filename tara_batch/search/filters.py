"""Search filters: validated values -> one LanceDB `where` expression. The only place that writes SQL for a query.

User text never reaches the expression unescaped: strings are single-quoted with quotes doubled (`sql_string`, the
one quoting function), NUL and control characters are refused, numbers must be finite numbers, timestamps must parse
as ISO-8601 and are re-printed by us, and column names come from `schema.py`, never from the request. A URI glob
becomes an anchored regular expression built by our own glob translator (`io.listing`), then quoted like any string.
A bad value raises `FilterError` (the HTTP service answers 400 with its message).

    Filters(duration_min=2, uri_prefix="s3://archive/2024/").where(segments=False)
    -> "duration >= 2.0 AND starts_with(uri, 's3://archive/2024/')"
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any

from tara_batch import schema as S

MAX_TEXT = 1000  # characters of any string value
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class FilterError(ValueError):
    """A filter value that cannot be used; names the field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"filter `{field}`: {message}")


def sql_string(value: str, field: str = "value") -> str:
    """A SQL string literal for `value`: single quotes doubled (the only escape DataFusion's literals have;
    backslashes are ordinary characters there), NUL and other control characters refused."""
    if not isinstance(value, str):
        raise FilterError(field, f"expected a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise FilterError(field, f"longer than {MAX_TEXT} characters")
    if _CONTROL.search(value):
        raise FilterError(field, "control characters (NUL, newlines, ...) are not allowed")
    return "'" + value.replace("'", "''") + "'"


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FilterError(field, f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise FilterError(field, f"expected a finite number, got {value!r}")
    return float(value)


def _timestamp(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise FilterError(field, f"expected an ISO-8601 time, got {value!r}")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FilterError(field, f"expected an ISO-8601 time like 2026-01-31T12:00:00Z, got {value!r}") from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    # Re-printed by us (digits, '-', ':', 'T', 'Z' only), never the caller's text.
    return "TIMESTAMP '" + t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "'"


@dataclass(frozen=True)
class Filters:
    """What a query may be narrowed by; every field optional. Ranges are inclusive."""

    duration_min: float | None = None  # seconds of the whole video
    duration_max: float | None = None
    uri_prefix: str | None = None
    uri_glob: str | None = None  # over the whole URI: `*` stays within a folder, `**` crosses folders
    created_after: str | None = None  # ISO-8601, when the row was embedded
    created_before: str | None = None
    window_start_min: float | None = None  # segment tables: the matched window lies within [min, max] seconds
    window_end_max: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Filters:
        data = data or {}
        if not isinstance(data, dict):
            raise FilterError("filters", "expected an object of filter fields")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FilterError(unknown[0], f"unknown filter; known: {sorted(known)}")
        return cls(**{k: v for k, v in data.items() if v is not None and v != ""})

    def where(self, *, segments: bool) -> str | None:
        """The expression (None when nothing is filtered). `segments`: the table has window columns."""
        parts: list[str] = []
        for name, column, op in (("duration_min", S.DURATION, ">="), ("duration_max", S.DURATION, "<="),
                                 ("window_start_min", S.SEGMENT_START, ">="), ("window_end_max", S.SEGMENT_END, "<=")):
            value = getattr(self, name)
            if value is None:
                continue
            if column in (S.SEGMENT_START, S.SEGMENT_END) and not segments:
                raise FilterError(name, "this index has one row per video, no windows; drop the window filter")
            parts.append(f"{column} {op} {_number(value, name)!r}")
        if self.uri_prefix is not None:
            parts.append(f"starts_with({S.URI}, {sql_string(self.uri_prefix, 'uri_prefix')})")
        if self.uri_glob is not None:
            parts.append(f"regexp_like({S.URI}, {sql_string(glob_regex(self.uri_glob), 'uri_glob')})")
        if self.created_after is not None:
            parts.append(f"{S.CREATED_AT} >= {_timestamp(self.created_after, 'created_after')}")
        if self.created_before is not None:
            parts.append(f"{S.CREATED_AT} <= {_timestamp(self.created_before, 'created_before')}")
        return " AND ".join(parts) or None


def glob_regex(glob: str) -> str:
    """An anchored regular expression for a URI glob (the listing's glob rules over the whole URI)."""
    from tara_batch.io.listing import glob_pattern

    sql_string(glob, "uri_glob")  # same limits as any string
    return "^" + glob_pattern(glob) + "$"
