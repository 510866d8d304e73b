"""Reading numeric options and turning a measured value into a status."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from protocol import CheckStatus


def number_option(
    options: Mapping[str, Any], name: str, default: float, *, minimum: float = 0.0
) -> float:
    """``options[name]`` as a number >= ``minimum``; a clear ValueError otherwise."""
    value = options.get(name, default)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"option {name}={value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"option {name}={value!r} is not a number")
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"option {name}={value!r} must be a number >= {minimum:g}")
    return float(value)


def threshold_status(value: float, *, fail_below: float, warn_below: float) -> CheckStatus:
    """FAIL below ``fail_below``, WARN below ``warn_below``, OK otherwise."""
    if value < fail_below:
        return CheckStatus.FAIL
    if value < warn_below:
        return CheckStatus.WARN
    return CheckStatus.OK


def format_number(value: float) -> str:
    """``1024.0`` -> ``"1024"``, ``1.5`` -> ``"1.5"``: thresholds as a person wrote them."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
