#!/usr/bin/env bash
# Idempotent setup: a project-local Python virtualenv with pinned packages.
#   scripts/setup.sh runtime   ONNX Runtime's shared library only (what the service loads)
#   scripts/setup.sh test      plus TensorFlow/Keras, tf2onnx, scikit-learn, pytest, grpcio-tools
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-runtime}
python=${PYTHON:-python3}
venv=.venv

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust (rustup) first" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi

# Reinstall only when the requirement files changed since the last successful run.
stamp="$venv/.installed-$what"
case "$what" in
  runtime) files=(requirements-runtime.txt train/constraints.txt) ;;
  test) files=(requirements-runtime.txt train/requirements.txt tests/python/requirements.txt train/constraints.txt) ;;
  *) echo "setup: unknown target '$what' (runtime or test)" >&2; exit 2 ;;
esac
# Debian packages the tests use: Prometheus and promtool, yamllint.
if [ "$what" = test ]; then
  missing=()
  for tool in prometheus:prometheus promtool:prometheus yamllint:yamllint; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
    echo "setup: installing Debian packages: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

want=$(cat "${files[@]}" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: Python packages for '$what' are up to date"
  exit 0
fi

"$venv/bin/python" -m pip install --quiet --upgrade pip
args=()
for f in "${files[@]}"; do
  case "$f" in
    *constraints.txt) args+=(--constraint "$f") ;;
    *) args+=(--requirement "$f") ;;
  esac
done
"$venv/bin/python" -m pip install --quiet "${args[@]}"
echo "$want" > "$stamp"
echo "setup: Python packages for '$what' installed in $venv"
