#!/usr/bin/env bash
# Fuzz the image decoding/preprocessing and the DetectRequest handling with cargo-fuzz
# (libFuzzer), N seconds per target; fails on any crash, panic, huge allocation or hang.
#   scripts/fuzz.sh [seconds]       default 30 (CI); e.g. 180 for a longer run
#   FUZZ_TARGETS="request" scripts/fuzz.sh 60     only some targets
# Idempotent: installs cargo-fuzz once (crates.io). Targets and seeds: fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
cargo_fuzz_version=0.13.2

# cargo-fuzz builds with -Z flags (-Zsanitizer, sancov coverage options) that rustc only
# accepts on nightly. The project's toolchain is stable 1.95.0 (rust-toolchain.toml) and
# no nightly can be installed here, so RUSTC_BOOTSTRAP=1 lets this stable rustc accept
# them. It is set for this script only; the project's own builds never use it.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
  echo "fuzz: installing cargo-fuzz $cargo_fuzz_version"
  cargo install --locked "cargo-fuzz@$cargo_fuzz_version"
fi

# AddressSanitizer (cargo-fuzz's default) also checks the unsafe code in the decoders
# (png, zune-jpeg) and libFuzzer's malloc limit; FUZZ_SANITIZER=none builds faster.
sanitizer=${FUZZ_SANITIZER:-address}
cd fuzz
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "fuzz: building ${targets//$'\n'/ } (sanitizer $sanitizer)"
started=$SECONDS
for target in $targets; do
  if ! cargo fuzz build --sanitizer "$sanitizer" "$target" >"$scratch/$target.build.log" 2>&1; then
    cat "$scratch/$target.build.log" >&2
    echo "fuzz: build of $target failed" >&2
    exit 1
  fi
  rm -f "$scratch/$target.build.log"
done
echo "fuzz: built in $((SECONDS - started)) s"

# Seeds are written at run time by fuzz/seedgen (deterministic: small synthetic PNG/JPEG,
# raw-pixel inputs, requests), so no image files are committed; fuzz/corpus/<target> keeps
# only inputs worth replaying that seedgen does not make (a past false positive).
echo "fuzz: writing seeds"
cargo run --quiet --locked --release --manifest-path seedgen/Cargo.toml -- "$scratch/seeds" >/dev/null

# New inputs go to a scratch corpus; the seeds are read only.
status=0
for target in $targets; do
  mkdir -p "$scratch/$target" "artifacts/$target"
  corpora=("$scratch/$target" "$scratch/seeds/$target")
  if [ -d "corpus/$target" ]; then corpora+=("corpus/$target"); fi
  echo "fuzz: $target for $seconds s"
  # -timeout: one input slower than 30 s is a hang (the largest image within Limits
  # takes up to ~13 s in this instrumented build on a loaded machine); -malloc_limit_mb:
  # one allocation over 512 MiB is a failure (decoders get 8 x max_pixels = 128 MiB).
  if ! cargo fuzz run --sanitizer "$sanitizer" "$target" "${corpora[@]}" -- \
      -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -malloc_limit_mb=512 \
      -max_len=8192 -print_final_stats=1 2>"$scratch/$target.log"; then
    status=1
    echo "fuzz: $target FAILED; input saved under fuzz/artifacts/$target/; log:" >&2
    tail -n 60 "$scratch/$target.log" >&2
  else
    grep -E '^(#[0-9]+\s+DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' \
      "$scratch/$target.log" || tail -n 5 "$scratch/$target.log"
  fi
done
exit $status
