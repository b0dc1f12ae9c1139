#!/usr/bin/env bash
# Run the GUI test modules N times (default 30), every other repetition in a shuffled order, and
# report how many repetitions failed or hung. A hang ends its run through pytest-timeout / the
# watchdog in tests/conftest.py, so it shows here as a failed repetition with its stacks in the log.
# Usage: scripts/repeat_gui_tests.sh [N] [LOG]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n="${1:-30}"
log="${2:-/tmp/repeat_gui_tests.log}"
export QT_QPA_PLATFORM=offscreen
py=.venv/bin/python
mapfile -t ids < <($py -m pytest -q --collect-only tests/test_gui.py tests/test_gui_lifetime.py \
    tests/test_calibration_gui.py 2>/dev/null | grep '::')
: > "$log"
failed=0
for ((i = 1; i <= n; i++)); do
    if ((i % 2 == 0)); then
        mapfile -t order < <(printf '%s\n' "${ids[@]}" | shuf --random-source=<(yes "$i"))
    else
        order=("${ids[@]}")
    fi
    start=$(date +%s)
    if timeout 900 $py -m pytest -q -p no:cacheprovider "${order[@]}" >> "$log" 2>&1; then
        result=ok
    else
        result="FAILED (exit $?)"
        failed=$((failed + 1))
    fi
    echo "repetition $i/$n ($([[ $((i % 2)) == 0 ]] && echo shuffled || echo in order)): $result in $(($(date +%s) - start)) s"
done
echo "$failed of $n repetitions failed or hung ($(( ${#ids[@]} )) tests each); log: $log"
[[ $failed == 0 ]]
