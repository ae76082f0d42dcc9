#!/usr/bin/env bash
# The test command of the README: sets the host up, then runs every test.
# Extra arguments go to vitest (a file name, -t PATTERN).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec npx --no-install vitest run "$@"
