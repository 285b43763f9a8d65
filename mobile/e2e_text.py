"""End-to-end graphs of text bundles (see mobile.e2e)."""

from __future__ import annotations

BUILDERS: dict = {}
