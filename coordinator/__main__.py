"""``python -m coordinator``: the server's commands (``serve``, ``token create``, ``certs``)."""

from __future__ import annotations

from coordinator.cli import main

main()
