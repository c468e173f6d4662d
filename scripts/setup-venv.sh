#!/usr/bin/env bash
# Creates (or refreshes) the shared virtualenv outside the clone and installs
# every MachPay distribution into it in editable mode. Re-running is cheap:
# nothing is reinstalled unless a pyproject, the constraints or the venv changed.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${MACHPAY_CACHE:-$HOME/.cache/machpay}
venv=${MACHPAY_VENV:-$cache/venv}
python=${PYTHON:-python3.11}

components=(core sdk gateway ingest streams settle api demo)

stamp_input() {
  cat "$here/constraints.txt" "$here/requirements-dev.txt"
  for c in "${components[@]}"; do cat "$here/$c/pyproject.toml"; done
  echo "$here"
}
want=$(stamp_input | sha256sum | cut -c1-16)

if [ -f "$venv/.machpay-stamp" ] && [ "$(cat "$venv/.machpay-stamp")" = "$want" ] && "$venv/bin/python" -c "import machpay.protocol" 2>/dev/null; then
  exit 0
fi

if ! command -v "$python" >/dev/null; then
  echo "setup-venv: $python not found; set PYTHON to a Python 3.11 interpreter" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "setup-venv: creating $venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
fi
echo "setup-venv: installing MachPay distributions into $venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -c "$here/constraints.txt" -r "$here/requirements-dev.txt" editables
args=(-e "$here/core[kafka]")
for c in "${components[@]:1}"; do args+=(-e "$here/$c"); done
"$venv/bin/python" -m pip install -q --no-build-isolation -c "$here/constraints.txt" "${args[@]}"
echo "$want" > "$venv/.machpay-stamp"
