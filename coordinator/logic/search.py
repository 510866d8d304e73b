"""Job search and summary, shaped like DiracX's ``/api/jobs/search`` and ``/summary``:
a list of ``{parameter, operator, value | values}`` filters, a sort, pages with a total.

Scripts written for DiracX port by changing the URL: the attribute names are DIRAC's
(``Status``, ``MinorStatus``, ``Site``, ``Owner``, ``SubmissionTime``...), the operators
DiracX's (``eq``, ``neq``, ``gt``, ``lt``, ``like``, ``not like``, ``in``, ``not in``), plus
``last days`` ("SubmissionTime in the last 7 days" without computing a date).
Users see their own jobs, admins every job, as everywhere else in the API.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Union

from coordinator.errors import BadRequest
from coordinator.logic.auth import TokenClaims
from coordinator.store import search as search_store
from coordinator.store.database import Database
from coordinator.store.name_index import LIKE_ESCAPE
from coordinator.store.schema import utc_timestamp
from protocol import Role

Value = Union[int, float, str, None]
SCALAR_OPERATORS = frozenset({"eq", "neq", "gt", "lt", "like", "not like", "last days"})
VECTOR_OPERATORS = frozenset({"in", "not in"})
OPERATORS = SCALAR_OPERATORS | VECTOR_OPERATORS
MAX_CONDITIONS = 50
MAX_VALUES = 1000
MAX_PER_PAGE = 10_000
DEFAULT_PER_PAGE = 100
MAX_DAYS = 36_500
DEFAULT_PARAMETERS = tuple(search_store.ATTRIBUTES)
_BY_LOWER = {name.lower(): name for name in search_store.ATTRIBUTES}


@dataclasses.dataclass(frozen=True)
class SearchSpec:
    parameter: str
    operator: str
    value: Value = None
    """For eq, neq, gt, lt, like, not like (``%`` and ``_`` wildcards, ``\\`` escapes the
    next character; case-insensitive),
    and ``last days`` (a number of days, on a time attribute)."""
    values: Optional[list[Value]] = None
    """For in and not in."""


@dataclasses.dataclass(frozen=True)
class SortSpec:
    parameter: str
    direction: str = "asc"
    """``asc`` or ``desc``."""


@dataclasses.dataclass(frozen=True)
class SearchParams:
    parameters: Optional[list[str]] = None
    """Attributes to return; null: all of them."""
    search: list[SearchSpec] = dataclasses.field(default_factory=list)
    sort: list[SortSpec] = dataclasses.field(default_factory=list)
    distinct: bool = False


@dataclasses.dataclass(frozen=True)
class SummaryParams:
    grouping: list[str]
    search: list[SearchSpec] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class SearchPage:
    rows: list[dict[str, Any]]
    total: int
    first: int
    """Index of the first row of this page in the whole result (0-based)."""


def attribute(name: str) -> str:
    """The attribute's canonical spelling; names are case-insensitive."""
    canonical = _BY_LOWER.get(str(name).lower())
    if canonical is None:
        raise BadRequest(
            f"unknown job attribute {name!r}",
            details={"parameter": name, "allowed": sorted(search_store.ATTRIBUTES)},
        )
    return canonical


def _typed(name: str, value: Value, operator: str) -> Any:
    """``value`` as the attribute stores it: ints for numbers, stored form for times."""
    if value is None:
        raise BadRequest(f"{name} {operator}: a value is needed", details={"parameter": name})
    if operator in ("like", "not like"):
        return _pattern(name, str(value))
    if name in search_store.NUMBER_ATTRIBUTES:
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise BadRequest(
                f"{name} takes whole numbers, not {value!r}", details={"parameter": name}
            ) from exc
    if name in search_store.TIME_ATTRIBUTES:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise BadRequest(
                f"{name} takes ISO 8601 times (2026-01-31T12:00:00Z), not {value!r}",
                details={"parameter": name},
            ) from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return utc_timestamp(moment)
    return str(value)


def _pattern(name: str, pattern: str) -> str:
    """A ``like`` pattern: ``%`` any text, ``_`` one character, ``\\`` makes the next
    character literal (``100\\%``), so a pattern may not end with a lone one."""
    if (len(pattern) - len(pattern.rstrip(LIKE_ESCAPE))) % 2 == 1:
        raise BadRequest(
            f"{name} like {pattern!r}: the pattern ends with an unfinished escape "
            f"({LIKE_ESCAPE!r} makes the next character literal; write it twice to mean it)",
            details={"parameter": name},
        )
    return pattern


def like_literal(text: str) -> str:
    """``text`` as a ``like`` pattern that matches it exactly (its wildcards escaped)."""
    return "".join(LIKE_ESCAPE + char if char in "%_\\" else char for char in text)


def condition(spec: SearchSpec, now: datetime) -> search_store.Condition:
    name = attribute(spec.parameter)
    op = spec.operator.lower().strip()
    if op in VECTOR_OPERATORS:
        if not spec.values or len(spec.values) > MAX_VALUES:
            raise BadRequest(
                f"{name} {op} needs 'values': a list of 1 to {MAX_VALUES} values",
                details={"parameter": name, "operator": op},
            )
        return search_store.Condition(name, op, tuple(_typed(name, v, op) for v in spec.values))
    if op == "last days":
        return _last_days(name, spec.value, now)
    if op not in SCALAR_OPERATORS:
        raise BadRequest(
            f"unknown operator {spec.operator!r}",
            details={"operator": spec.operator, "allowed": sorted(OPERATORS)},
        )
    return search_store.Condition(name, op, _typed(name, spec.value, op))


def _last_days(name: str, value: Value, now: datetime) -> search_store.Condition:
    if name not in search_store.TIME_ATTRIBUTES:
        raise BadRequest(
            f"'last days' applies to times ({', '.join(sorted(search_store.TIME_ATTRIBUTES))})",
            details={"parameter": name},
        )
    try:
        days = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"'last days' takes a number of days, not {value!r}") from exc
    if not 0 < days <= MAX_DAYS:
        raise BadRequest(f"'last days' takes a number of days between 0 and {MAX_DAYS}")
    return search_store.Condition(name, "gt", utc_timestamp(now - timedelta(days=days)))


def scoped_query(claims: TokenClaims, specs: list[SearchSpec]) -> search_store.Query:
    if len(specs) > MAX_CONDITIONS:
        raise BadRequest(f"at most {MAX_CONDITIONS} search conditions")
    now = datetime.now(timezone.utc)
    conditions = tuple(condition(spec, now) for spec in specs)
    if claims.role is Role.ADMIN:
        return search_store.Query(conditions)
    return search_store.Query(conditions, owner=claims.subject, vo=claims.vo)


def search(
    db: Database, claims: TokenClaims, params: SearchParams, page: int, per_page: int
) -> SearchPage:
    """One page of the jobs the caller may see that match every condition."""
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise BadRequest(f"page starts at 1; per_page is between 1 and {MAX_PER_PAGE}")
    query = scoped_query(claims, params.search)
    parameters = [attribute(p) for p in params.parameters or DEFAULT_PARAMETERS]
    sort = [(attribute(s.parameter), _descending(s.direction)) for s in params.sort]
    first = (page - 1) * per_page
    with db.read() as conn:
        query = search_store.with_indexes(conn, query)
        rows, total = search_store.search_with_total(
            conn,
            query,
            list(dict.fromkeys(parameters)),
            sort,
            offset=first,
            limit=per_page,
            distinct=params.distinct,
        )
    return SearchPage(rows=rows, total=total, first=first)


def summary(db: Database, claims: TokenClaims, params: SummaryParams) -> list[dict[str, Any]]:
    """How many of the caller's visible jobs share each combination of ``grouping``."""
    if not params.grouping:
        raise BadRequest("grouping names at least one attribute")
    grouping = list(dict.fromkeys(attribute(name) for name in params.grouping))
    query = scoped_query(claims, params.search)
    with db.read() as conn:
        return search_store.summary(conn, search_store.with_indexes(conn, query), grouping)


def _descending(direction: str) -> bool:
    text = direction.lower()
    if text not in ("asc", "desc"):
        raise BadRequest(f"sort direction is 'asc' or 'desc', not {direction!r}")
    return text == "desc"
