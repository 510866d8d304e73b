"""Write the coordinator's live OpenAPI document to ``tests/coordinator/openapi.json``.

Run after an intended API change: ``.venv/bin/python tests/coordinator/regen_openapi.py``
(``tests/coordinator/test_openapi.py`` fails until the snapshot matches the app again).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).resolve().parent / "openapi.json"
REPO_ROOT = SNAPSHOT.parents[2]


def live_document() -> dict[str, Any]:
    """The document a coordinator with default settings serves at ``/openapi.json``."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from coordinator.app import create_app
    from coordinator.settings import Settings

    with tempfile.TemporaryDirectory(prefix="gridpilot-openapi-") as data_dir:
        app = create_app(Settings(data_dir=Path(data_dir)))
        document: dict[str, Any] = app.openapi()
        app.state.context.db.dispose()
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SNAPSHOT.write_text(render(live_document()), encoding="utf-8")
    print(f"wrote {SNAPSHOT}")
