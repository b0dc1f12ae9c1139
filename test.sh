#!/usr/bin/env bash
# Set up .venv if needed, then run the whole test suite (headless Qt). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash scripts/setup-env.sh
export QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest "$@"
