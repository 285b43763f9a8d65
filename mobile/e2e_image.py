"""End-to-end graphs of image bundles (see mobile.e2e)."""

from __future__ import annotations

BUILDERS: dict = {}
