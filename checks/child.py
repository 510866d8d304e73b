"""Runs one check in a child process started by ``checks.runner``.

The runner starts ``python -c BOOTSTRAP RESULT_FD SYS_PATH_JSON``: the bootstrap sets
``sys.path`` to the pilot's own plus the checks' search path, then calls ``main``. The
request (ref, name, options, node facts, work dir) arrives as JSON on stdin; the outcome
goes back as one JSON object on RESULT_FD, so whatever the check prints cannot corrupt
it. Every failure to load or run the check becomes a ``fail`` outcome; only a crash of
the interpreter itself leaves the runner without one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from checks.api import CheckContext, CheckResult
from checks.errors import ChecksError
from checks.registry import load_check
from pilot.protocol import CheckStatus

logger = logging.getLogger(__name__)


def run_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """Load and run the check a request names; return its outcome as a JSON-ready dict."""
    ref = str(request["ref"])
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


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    result_fd = int(args[0])
    # Processes the check starts must not hold the result pipe open after we exit.
    os.set_inheritable(result_fd, False)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    request = json.loads(sys.stdin.buffer.read())
    outcome = run_request(request)
    with os.fdopen(result_fd, "wb") as result_pipe:
        result_pipe.write(json.dumps(outcome, allow_nan=False).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
