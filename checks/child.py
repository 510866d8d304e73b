"""Runs one check inside its child process (forked by ``checks.forkserver``).

The request (ref or script, name, options, node facts, work dir) is a JSON-ready mapping;
the outcome is a JSON-ready dict the fork server writes to the check's result pipe, so
whatever the check prints cannot corrupt it. Every failure to load or run the check
becomes a ``fail`` outcome; only a crash of the interpreter itself leaves the runner
without one.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from checks.api import CheckContext, CheckResult
from checks.errors import ChecksError
from checks.registry import load_check
from checks.scripts import run_script
from protocol import CheckStatus

logger = logging.getLogger(__name__)


def run_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """Load and run the check a request names; return its outcome as a JSON-ready dict."""
    ref = str(request["ref"])
    if request.get("script"):
        return run_script(
            Path(request["script"]),
            workdir=Path(request["workdir"]),
            options=request.get("options", {}),
            env=os.environ,
        )
    try:
        _, function = load_check(ref)
    except ChecksError as exc:
        return _failure(str(exc))
    context = CheckContext(
        options=request.get("options", {}),
        node_facts=request.get("node_facts", {}),
        workdir=Path(request["workdir"]),
        logger=logging.getLogger(f"gridpilot.check.{request['name']}"),
    )
    try:
        result = function(context)
    except Exception as exc:
        # Boundary: a check's own bug must become a reported failure, not a crash.
        logger.exception("check %s raised", ref)
        return _failure(f"raised {_describe(exc)}")
    if not isinstance(result, CheckResult):
        return _failure(f"returned {type(result).__name__}, expected a CheckResult")
    return _outcome(result)


def _outcome(result: CheckResult) -> dict[str, Any]:
    outcome = {
        "status": result.status.value,
        "message": result.message,
        "facts": dict(result.facts),
        "tags": list(result.tags),
    }
    try:
        json.dumps(outcome, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return _failure(f"returned facts that are not plain JSON: {exc}")
    return outcome


def _failure(message: str) -> dict[str, Any]:
    return {"status": CheckStatus.FAIL.value, "message": message, "facts": {}, "tags": []}


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"
