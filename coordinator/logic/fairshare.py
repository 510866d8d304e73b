"""Fair share between the owners of a VO: pure rules, no SQL.

Each owner has a weight (default 1) and a usage: the cores matched to its jobs, decaying
by half every ``half_life_s`` (HTCondor's accountant works the same way). The next job of a
VO goes to the owner, among those with a job that fits the pilot, with the lowest
usage / weight; ties go to the owner whose name sorts first. Over many matches the cores
given to owners split in the ratio of their weights. An owner with weight 0 gets work only
when no other owner has any that fits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from coordinator.errors import CoordinatorError

DEFAULT_WEIGHT = 1.0

Weights = Mapping[str, Mapping[str, float]]
"""VO -> owner -> weight."""


class FairShareConfigError(CoordinatorError):
    """A fair-share weights file or value that cannot be used."""

    code = "bad_fair_share"


def parse_weights(text: str, source: str = "fair-share weights") -> dict[str, dict[str, float]]:
    """Weights from YAML or JSON text: ``{vo: {owner: weight}}``, weights >= 0."""
    try:
        data: Any = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise FairShareConfigError(f"{source}: not YAML or JSON: {exc}") from exc
    return check_weights(data or {}, source)


def load_weights(path: Path) -> dict[str, dict[str, float]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FairShareConfigError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_weights(text, str(path))


def check_weights(data: Any, source: str) -> dict[str, dict[str, float]]:
    if not isinstance(data, Mapping):
        raise FairShareConfigError(f"{source}: expected a mapping of VO to {{owner: weight}}")
    result: dict[str, dict[str, float]] = {}
    for vo, owners in data.items():
        if not isinstance(owners, Mapping):
            raise FairShareConfigError(
                f"{source}: VO {vo!r} must map owners to weights", details={"vo": str(vo)}
            )
        result[str(vo)] = {str(owner): _weight(weight, source) for owner, weight in owners.items()}
    return result


def _weight(value: Any, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FairShareConfigError(f"{source}: weight {value!r} is not a number")
    if value < 0 or not math.isfinite(value):
        raise FairShareConfigError(f"{source}: weight {value!r} must be a finite number >= 0")
    return float(value)


def decayed(usage: float, age_s: float, half_life_s: float) -> float:
    """``usage`` recorded ``age_s`` ago, as it counts now."""
    if half_life_s <= 0:
        return 0.0
    return usage * 0.5 ** (max(0.0, age_s) / half_life_s)


def _share_used(
    usage: Mapping[str, float], weights: Mapping[str, float]
) -> Callable[[str], tuple[float, str]]:
    def share_used(owner: str) -> tuple[float, str]:
        weight = weights.get(owner, DEFAULT_WEIGHT)
        used = usage.get(owner, 0.0)
        if weight <= 0:
            return (math.inf, owner)
        return (used / weight, owner)

    return share_used


def next_owner(
    owners: Iterable[str], usage: Mapping[str, float], weights: Mapping[str, float]
) -> str:
    """The owner who is furthest below their share. ``owners`` must not be empty."""
    return min(owners, key=_share_used(usage, weights))


def share_order(
    owners: Iterable[str], usage: Mapping[str, float], weights: Mapping[str, float]
) -> list[str]:
    """``owners`` in the order fair share serves them (``next_owner`` first)."""
    return sorted(owners, key=_share_used(usage, weights))
