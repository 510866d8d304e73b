"""A small Server-Sent Events reader for tests: events as dicts, each wait with a deadline."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

import requests


class EventReader:
    """``GET /api/v1/events`` held open; ``close()`` (or ``with``) ends it."""

    def __init__(self, url: str, headers: dict[str, str], **params: Any) -> None:
        self.reply = requests.get(url, headers=headers, params=params, stream=True, timeout=(5, 5))
        self.status_code = self.reply.status_code
        self._lines: Optional[Iterator[str]] = None
        self.seen: list[dict[str, Any]] = []

    def __enter__(self) -> EventReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.reply.close()

    def _next_event(self) -> dict[str, Any]:
        if self._lines is None:
            self._lines = self.reply.iter_lines(decode_unicode=True)
        event: dict[str, Any] = {}
        for line in self._lines:
            if not line:
                if "event" in event:
                    return event
                event = {}
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                event["id"] = int(value)
            elif field == "event":
                event["event"] = value
            elif field == "data":
                event["data"] = json.loads(value)
        raise AssertionError("the event stream ended")

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """The first event (seen before or arriving now) for which ``predicate`` holds."""
        for event in self.seen:
            if predicate(event):
                return event
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            event = self._next_event()  # a read blocks for at most the 5 s read timeout
            self.seen.append(event)
            if predicate(event):
                return event
        raise AssertionError(f"no such event within {timeout_s} s; seen: {self.seen}")
