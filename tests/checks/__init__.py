"""Tests of the checks package."""

from __future__ import annotations
