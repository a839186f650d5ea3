# oodgate: two commands. `make run` sets up and serves; `make test` sets up and tests.
# Datasets come from their canonical sources into ~/.cache/oodgate/data, or from a
# read-only mirror folder named by OODGATE_DATA_DIR (no network).

PYTHON ?= python3
VENV := .venv
CARGO ?= cargo
OODGATE := target/release/oodgate

# The ONNX Runtime library the service loads, from the pinned onnxruntime wheel; found
# when the recipe runs (the venv may not exist when make starts). ORT_DYLIB_PATH wins.
WITH_ORT = ORT_DYLIB_PATH="$${ORT_DYLIB_PATH:-$$(ls $(CURDIR)/$(VENV)/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1 | head -n 1)}"

# Seconds per fuzz target in `make test` (longer runs: scripts/fuzz.sh 600).
FUZZ_SECONDS ?= 20

.PHONY: run replay ood test setup setup-test build data fmt lint clean bench int8

run: setup data
	$(WITH_ORT) $(OODGATE) serve

# Against a running `make run`: the three test sets through the service.
replay: build data
	target/release/oodgate-replay --wait-seconds 120

# The out-of-distribution table through the service's own verdicts: starts a server,
# replays the three test sets and the synthetic letters, doodles and typed digits.
ood: setup-test data
	$(WITH_ORT) scripts/ood-report.sh $(OOD_FLAGS)

test: setup-test data
	$(WITH_ORT) $(CARGO) test --release --workspace
	$(VENV)/bin/python -m pytest -q train/tests
	scripts/deny.sh
	$(WITH_ORT) $(OODGATE) bench --quick --python $(VENV)/bin/python --work target/bench-quick \
		--out target/bench-quick/BENCHMARKS.md --command "make test (oodgate bench --quick)"
	scripts/fuzz.sh $(FUZZ_SECONDS)

# The performance harness (about 16 minutes on 2 cores; `make test` runs it with --quick,
# which checks that it works without judging timings): writes BENCHMARKS.md, raw numbers
# in target/bench/results.json. Needs the test venv (Keras, scikit-learn) for the
# comparison with the seed's stack.
bench: setup-test data
	$(WITH_ORT) $(OODGATE) bench --python $(VENV)/bin/python $(BENCH_FLAGS)

# The shipped gates' int8 models (model.int8.onnx beside model.onnx, served with
# `variant = "int8"`), calibrated on training images; each card records how.
INT8_GATES ?= models/mnist-cosface-oe-near-fonts models/fashion-cosface
int8: setup-test data
	for gate in $(INT8_GATES); do $(VENV)/bin/python train/quantize.py $$gate || exit 1; done

setup:
	scripts/setup.sh runtime
	$(MAKE) build

setup-test:
	scripts/setup.sh test
	$(MAKE) build

build:
	$(CARGO) build --release --workspace --bins

data: build
	$(OODGATE) data fetch

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

clean:
	rm -rf target $(VENV)
