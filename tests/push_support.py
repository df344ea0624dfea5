"""Helpers for the push tests (the /api/gates/<gate>/evidence endpoint and the `qualitygate push` CLI)."""

from __future__ import annotations

# Two push-sourced gates: coverage from `main` only, with a threshold and a delta; JUnit from any branch.
PUSH_GATES = """
- id: cov
  coverage: {push: {max_age: 1d, branch: main}}
  expect: ["value >= 85%", "delta >= -0.5%"]
- id: tests
  junit: {push: {max_age: 1d}}
"""
