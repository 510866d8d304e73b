"""The Job Monitor's filters: the page's URL query (bookmarkable) <-> search conditions."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Optional
from urllib.parse import urlencode

from coordinator.logic.search import (
    SearchParams,
    SearchSpec,
    SortSpec,
    SummaryParams,
    like_literal,
)
from protocol import JobStatus

PAGE_SIZES = (25, 50, 100)
COLUMNS = (
    ("JobID", "Job ID"),
    ("Status", "Status"),
    ("MinorStatus", "Minor status"),
    ("ApplicationStatus", "Application status"),
    ("Site", "Site"),
    ("JobName", "Job name"),
    ("Owner", "Owner"),
    ("VO", "VO"),
    ("OwnerGroup", "Group"),
    ("JobGroup", "Job group"),
    ("SubmissionTime", "Submitted (UTC)"),
    ("LastUpdateTime", "Last update (UTC)"),
)
SORTABLE = frozenset(name for name, _label in COLUMNS)
# URL parameter -> (attribute, operator); several values of one parameter mean "any of".
EQUALITY_FILTERS = {
    "site": "Site",
    "owner": "Owner",
    "owner_group": "OwnerGroup",
    "job_group": "JobGroup",
    "minor_status": "MinorStatus",
}
FILTER_KEYS = ("status", *EQUALITY_FILTERS, "job_name", "days", "from", "to", "ids")
UNSPLIT = frozenset({"minor_status", "job_name"})
STATUSES = tuple(status.value for status in JobStatus)


@dataclasses.dataclass(frozen=True)
class MonitorView:
    filters: dict[str, list[str]]
    sort: str = "JobID"
    descending: bool = True
    page: int = 1
    per_page: int = PAGE_SIZES[0]

    @classmethod
    def from_query(cls, query: Mapping[str, Sequence[str]]) -> MonitorView:
        filters: dict[str, list[str]] = {}
        for key in FILTER_KEYS:
            raws = query.get(key, ())
            if key in UNSPLIT:  # free text: a comma is part of it
                values = [raw.strip() for raw in raws]
            else:
                values = [part.strip() for raw in raws for part in raw.split(",")]
            if [v for v in values if v]:
                filters[key] = [v for v in values if v]
        sort = _first(query, "sort", "JobID")
        per_page = _number(_first(query, "per_page", ""), PAGE_SIZES[0])
        return cls(
            filters=filters,
            sort=sort if sort in SORTABLE else "JobID",
            descending=_first(query, "dir", "desc") != "asc",
            page=max(_number(_first(query, "page", ""), 1), 1),
            per_page=per_page if per_page in PAGE_SIZES else PAGE_SIZES[0],
        )

    def specs(self, *, with_status: bool = True) -> list[SearchSpec]:
        specs: list[SearchSpec] = []
        statuses = self.filters.get("status", [])
        if with_status and statuses:
            specs.append(SearchSpec("Status", "in", values=list(statuses)))
        elif "Deleted" not in statuses:
            specs.append(SearchSpec("Status", "neq", "Deleted"))
        for key, name in EQUALITY_FILTERS.items():
            if key in self.filters:
                specs.append(SearchSpec(name, "in", values=list(self.filters[key])))
        if "job_name" in self.filters:
            name = like_literal(self.filters["job_name"][0])
            specs.append(SearchSpec("JobName", "like", f"%{name}%"))
        if "days" in self.filters:
            specs.append(SearchSpec("SubmissionTime", "last days", self.filters["days"][0]))
        if "from" in self.filters:
            specs.append(SearchSpec("SubmissionTime", "gt", self.filters["from"][0]))
        if "to" in self.filters:
            specs.append(SearchSpec("SubmissionTime", "lt", self.filters["to"][0]))
        if "ids" in self.filters:
            specs.append(SearchSpec("JobID", "in", values=list(self.filters["ids"])))
        return specs

    def search(self) -> SearchParams:
        order = [SortSpec(self.sort, "desc" if self.descending else "asc")]
        return SearchParams(
            parameters=[name for name, _ in COLUMNS], search=self.specs(), sort=order
        )

    def status_summary(self) -> SummaryParams:
        """Counts per status under every filter but the status one (as ``gridpilot jobs``)."""
        return SummaryParams(grouping=["Status"], search=self.specs(with_status=False))

    def site_summary(self) -> SummaryParams:
        return SummaryParams(grouping=["Site"], search=self.specs())

    def url(self, **changes: Any) -> str:
        """This view's URL with some parameters changed (None removes one)."""
        params: dict[str, Any] = {key: ",".join(values) for key, values in self.filters.items()}
        params.update(sort=self.sort, dir="desc" if self.descending else "asc")
        params.update(page=self.page, per_page=self.per_page)
        params.update(changes)
        kept = {key: value for key, value in params.items() if value not in (None, "")}
        return "/web/jobs?" + urlencode(kept)

    def sort_url(self, column: str) -> str:
        descending = not self.descending if column == self.sort else column == "JobID"
        return self.url(sort=column, dir="desc" if descending else "asc", page=1)

    def value(self, key: str) -> str:
        return ",".join(self.filters.get(key, []))


def _first(query: Mapping[str, Sequence[str]], key: str, default: str) -> str:
    values = query.get(key) or ()
    return values[0] if values else default


def _number(text: str, default: int) -> int:
    return int(text) if text.isdigit() else default


def query_lists(items: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for key, value in items:
        result.setdefault(key, []).append(value)
    return result


def total_pages(total: int, per_page: int) -> int:
    return max((total + per_page - 1) // per_page, 1)


def optional_int(text: Optional[str]) -> Optional[int]:
    return int(text) if text and text.isdigit() else None
