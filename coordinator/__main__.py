"""``python -m coordinator``: the full ``gridpilot`` CLI."""

from __future__ import annotations

from coordinator.cli import main

main()
