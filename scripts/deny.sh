#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (policy: deny.toml at the root).
#   scripts/deny.sh                     licenses, bans, sources (offline; CI)
#   scripts/deny.sh advisories          the RustSec advisory database (needs GitHub)
#   scripts/deny.sh licenses bans ...   any checks cargo-deny knows
# Idempotent: installs cargo-deny once (crates.io).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo_deny_version=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "$cargo_deny_version"; then
  echo "deny: installing cargo-deny $cargo_deny_version"
  cargo install --locked "cargo-deny@$cargo_deny_version"
fi

checks=("$@")
[ ${#checks[@]} -gt 0 ] || checks=(licenses bans sources)
# The main workspace (its Cargo.lock as committed: --locked), then the fuzz project,
# whose own Cargo.lock follows the service's manifests (cargo may refresh it).
echo "deny: ${checks[*]} (workspace)"
cargo deny --locked --config deny.toml --manifest-path Cargo.toml check "${checks[@]}"
echo "deny: ${checks[*]} (fuzz/)"
cargo deny --config deny.toml --manifest-path fuzz/Cargo.toml check "${checks[@]}"
