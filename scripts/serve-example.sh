#!/usr/bin/env bash
# Serves the bundled example tracker on http://127.0.0.1:9916/ (state in ./data/qualitygate.db).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QG_EXTRAS="" source "$root/scripts/env.sh"
cd "$root"
exec qualitygate serve --config.file examples/tracker.yml --web.enable-lifecycle "$@"
