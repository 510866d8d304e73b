"""The user's side of gridpilot: the ``gridpilot`` command and the typed client it calls.

``client.cli`` is the console script. Users' commands (submit, status, kill, logs, login,
...) live here; the server's (``serve``, ``token create``, ``certs``) and the worker's
(``pilot``, ``checks``) are loaded only when named, so ``gridpilot pilot`` imports nothing of
the coordinator and ``gridpilot status`` nothing of the server's frameworks.
"""

from __future__ import annotations
