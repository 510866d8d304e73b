"""gridpilot's worker-node agent."""

from __future__ import annotations

from protocol import __version__

__all__ = ["__version__"]
