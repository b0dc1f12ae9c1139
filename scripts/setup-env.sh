#!/usr/bin/env bash
# Create or refresh .venv with the CPU build of PyTorch and every dependency of pyproject.toml.
# Fast when nothing changed: a stamp file holds the hash of pyproject.toml and this script.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.setup-stamp"
want="$(cat "$root/pyproject.toml" "$root/scripts/setup-env.sh" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi
echo "setting up $venv (first run or dependencies changed)..." >&2
[[ -x "$venv/bin/python" ]] || python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
# The CPU wheel of torch first: any later unpinned 'torch' requirement is then already satisfied
# and pip does not pull the multi-gigabyte CUDA build.
"$py" -m pip install --quiet "torch==2.13.0"
"$py" -m pip install --quiet -e "$root[test]"
# OpenVINO's converter sends usage telemetry unless opted out: a station sends nothing.
"$venv/bin/opt_in_out" --opt_out >/dev/null
echo "$want" > "$stamp"
