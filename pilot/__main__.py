"""``python -m pilot``: the worker-side CLI (also the single-file pilot's entry point)."""

from __future__ import annotations

from pilot.cli import main

main()
