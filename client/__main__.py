"""``python -m client``: the ``gridpilot`` command."""

from __future__ import annotations

from client.cli import main

main()
