#!/usr/bin/env bash
# Set up .venv if needed, then run the station. With no arguments: a full simulated inspection
# on the bundled sim profile and model. Any arguments are passed to main.py instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash scripts/setup-env.sh
if [[ $# -eq 0 ]]; then
    set -- scan --sim
fi
exec .venv/bin/python main.py "$@"
