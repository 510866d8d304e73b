"""Pages of every list the API serves (jobs, a job's history, pilots, revoked tokens).

A list answers at most ``limit`` items (``DEFAULT_LIMIT`` when not given, ``MAX_LIMIT`` at
most) and a ``next_cursor`` when more follow; the next page is asked for with
``cursor=<next_cursor>``. A cursor is opaque to clients: the sort key of the last item sent,
so a page never repeats or skips an item that was there before, whatever is added or
removed meanwhile (keyset paging, not offsets).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any, Generic, Optional, TypeVar

from coordinator.errors import BadRequest
from coordinator.logic.bounds import INT64, bad_character

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
CURSOR_MAX_CHARS = 1024

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class PageRequest:
    """What the caller asked for: at most ``limit`` items after ``after`` (a sort key)."""

    limit: int
    after: Optional[tuple[Any, ...]] = None


@dataclasses.dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: Optional[str]


def page_request(
    limit: Optional[int], cursor: Optional[str], key_types: Sequence[type]
) -> PageRequest:
    """Check ``limit`` and decode ``cursor`` into a sort key of ``key_types``; 400 otherwise."""
    wanted = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= wanted <= MAX_LIMIT:
        raise BadRequest(
            f"limit must be between 1 and {MAX_LIMIT}",
            details={"limit": wanted, "max_limit": MAX_LIMIT},
        )
    if not cursor:
        return PageRequest(limit=wanted)
    return PageRequest(limit=wanted, after=_decode(cursor, key_types))


def paged(rows: Sequence[T], request: PageRequest, key: Callable[[T], tuple[Any, ...]]) -> Page[T]:
    """The page out of ``rows``, read with one row more than the page holds: that extra row
    is how we know that another page follows."""
    items = list(rows[: request.limit])
    more = len(rows) > request.limit
    return Page(items=items, next_cursor=_encode(key(items[-1])) if more and items else None)


def _encode(values: tuple[Any, ...]) -> str:
    text = json.dumps(list(values), separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: str, key_types: Sequence[type]) -> tuple[Any, ...]:
    malformed = BadRequest(
        "cursor is not one this coordinator gave out; pass next_cursor back unchanged",
        details={"cursor": cursor[:80]},
    )
    if len(cursor) > CURSOR_MAX_CHARS:
        raise malformed
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise malformed from exc
    if not isinstance(values, list) or len(values) != len(key_types):
        raise malformed
    for value, kind in zip(values, key_types):
        if type(value) is not kind:
            raise malformed
        if isinstance(value, int) and value not in INT64:
            raise malformed
        if isinstance(value, str) and (len(value) > 255 or bad_character(value) is not None):
            raise malformed
    return tuple(values)
