"""The checks every pilot runs: one module per concern, listed in ``checks.registry``."""

from __future__ import annotations
