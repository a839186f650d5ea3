#!/usr/bin/env bash
# The out-of-distribution figures through the service's own verdicts, in one command
# (`make ood`): starts `oodgate serve` on the default model (exact search, the server's
# default threshold), replays MNIST, Fashion-MNIST and CIFAR-10 test and the synthetic
# letters, doodles and typed digits through it, prints the replay's table, and stops
# the server. Extra arguments go to oodgate-replay (for example --contamination 0.001).
set -euo pipefail
cd "$(dirname "$0")/.."

grpc=${OOD_GRPC_ADDR:-127.0.0.1:50071}
http=${OOD_HTTP_ADDR:-127.0.0.1:8171}
log=$(mktemp -t oodgate-ood.XXXXXX.log)
OODGATE_SERVER__GRPC_ADDR=$grpc OODGATE_SERVER__HTTP_ADDR=$http OODGATE_INDEX__SEARCH=exact \
  target/release/oodgate serve >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT

if ! target/release/oodgate-replay --addr "http://$grpc" --wait-seconds 300 --quiet \
  mnist fashion-mnist cifar10 letters doodles typed-digits "$@"; then
  echo "ood-report: the replay failed; server log ($log):" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
