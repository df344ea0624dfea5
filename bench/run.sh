#!/usr/bin/env bash
# The benchmark suite (docs/performance.md): installs what it needs, runs P1-P5, prints the table
# and writes JSON into bench/results/. Arguments go to `python -m bench` (--smoke, --only P1,P3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/system-deps.sh"   # prometheus-blackbox-exporter, nginx-light, wrk, ...
source "$root/scripts/env.sh"         # the project's virtualenv
cd "$root"
exec python -m bench "$@"
