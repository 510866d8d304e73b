"""The web portal: server-rendered pages served by the coordinator itself.

The pages are thin, like the API's routers: they call the same logic layer the API uses
(``coordinator.logic.search``, ``jobs``, ``registry``...) and render it with Jinja2; the
small amount of JavaScript they carry (``static/``) calls the same ``/api/v1`` endpoints as
scripts do, authenticated by the session cookie (``coordinator.api.session``), and follows
the live event stream. See docs/web.md.
"""

from __future__ import annotations
