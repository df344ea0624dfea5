#!/usr/bin/env bash
# Creates (or refreshes) the project's virtualenv in .venv with every Python dependency.
# Sourced by the other scripts; safe to run again: it reinstalls only when pyproject.toml changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
extras="${QG_EXTRAS-test,dashboards}"
stamp="$venv/.installed-$(sha256sum "$root/pyproject.toml" | cut -c1-16)-${extras//,/_}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  if [ -n "$extras" ]; then
    "$venv/bin/python" -m pip install -q -e "$root[$extras]" >&2
  else
    "$venv/bin/python" -m pip install -q -e "$root" >&2
  fi
  rm -f "$venv"/.installed-* && touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
