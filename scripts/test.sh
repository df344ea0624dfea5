#!/usr/bin/env bash
# Runs the whole test suite: installs system packages and the virtualenv first if needed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/system-deps.sh"
source "$root/scripts/env.sh"
cd "$root"
exec python -m pytest "$@"
