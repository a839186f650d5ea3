#!/usr/bin/env bash
# Idempotent setup: a project-local Python virtualenv with pinned packages.
#   scripts/setup.sh runtime   ONNX Runtime's shared library only (what the service loads)
#   scripts/setup.sh test      plus TensorFlow/Keras, tf2onnx, scikit-learn, pytest, grpcio-tools,
#                              the browser test's Chromium (apt) and playwright-core (npm ci),
#                              and the fonts of the synthetic evaluation sets and of the
#                              trainer's typeset digits (apt)
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

# Debian packages the tests use, installed only when missing: chromium (the demo page's
# browser test), prometheus and promtool (deploy/ checks), yamllint, the fonts the
# synthetic near-digit sets are drawn from (datasets/src/synth/fonts.rs names each file;
# `oodgate eval`, `oodgate data synth` and `oodgate-replay letters ...` need them too),
# and the other fonts the trainer typesets its extra digits in (train/oodtrain/fonts.py
# names each file; no package in common with the evaluation's).
debian_packages() {
  local missing=()
  [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
  command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
  command -v yamllint >/dev/null || missing+=(yamllint)
  local font
  for font in fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf fonts-texgyre \
    fonts-comic-neue fonts-urw-base35 fonts-cantarell hershey-fonts-data \
    fonts-lato fonts-open-sans fonts-roboto-unhinted fonts-crosextra-carlito fonts-cabin \
    fonts-linuxlibertine fonts-yanone-kaffeesatz fonts-sil-andika fonts-quicksand \
    fonts-comfortaa fonts-crosextra-caladea fonts-sil-gentiumplus fonts-firacode \
    fonts-inconsolata fonts-noto-mono fonts-humor-sans fonts-dancingscript fonts-kristi; do
    dpkg-query -W -f='${Status}' "$font" 2>/dev/null | grep -q 'ok installed' || missing+=("$font")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    echo "setup: installing Debian packages: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The browser test's pinned playwright-core, installed only when the lock file changed.
browser_tools() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "setup: node and npm not found; install Node.js 20 or later for the browser test" >&2
    exit 1
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then
    echo "setup: Node.js $(node --version) is too old for playwright-core; install 20 or later" >&2
    exit 1
  fi
  local npm_stamp=tests/browser/node_modules/.installed-lock
  local npm_want
  npm_want=$(cat tests/browser/package.json tests/browser/package-lock.json | sha256sum | cut -d' ' -f1)
  if [ -f "$npm_stamp" ] && [ "$(cat "$npm_stamp")" = "$npm_want" ]; then
    echo "setup: browser test packages are up to date"
  else
    npm ci --prefix tests/browser --no-audit --no-fund
    echo "$npm_want" > "$npm_stamp"
    echo "setup: browser test packages installed in tests/browser/node_modules"
  fi
}
if [ "$what" = test ]; then
  debian_packages
  browser_tools
fi

# Reinstall only when the requirement files changed since the last successful run.
stamp="$venv/.installed-$what"
case "$what" in
  runtime) files=(requirements-runtime.txt train/constraints.txt) ;;
  test) files=(requirements-runtime.txt train/requirements.txt tests/python/requirements.txt train/constraints.txt) ;;
  *) echo "setup: unknown target '$what' (runtime or test)" >&2; exit 2 ;;
esac
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
