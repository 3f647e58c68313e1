# nanochat — set-up, build, tests and runs. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
SETUP_STAMP := $(VENV)/.setup-done
TEST_STAMP := $(VENV)/.test-setup-done
BIN := $(CURDIR)/target/release/nanochat
PRESET ?= d20
# `make smoke` runs the smoke preset, or the one given on the command line (`make smoke PRESET=gpt2-smoke`),
# each in its own base dir.
SMOKE_PRESET := $(if $(filter command line environment,$(origin PRESET)),$(PRESET),smoke)
SMOKE_DIR ?= $(CURDIR)/target/$(SMOKE_PRESET)
IMAGE ?= nanochat:latest
# Pin of the image's base: leave empty to debootstrap Debian 12 locally (no registry needed) and pin its id.
BASE_IMAGE ?=

# The Python that makes .venv: any CPython 3.10-3.13 (manifests/python/*.lock hold wheels for each). PYTHON=...
# picks one; otherwise the venv `make setup` made is kept, and a new one takes python3 when it is in range,
# else the newest of python3.13 ... python3.10 that runs. The stamp holds the venv's version: a PYTHON of
# another version makes `make setup` run again and recreate the venv.
python_version = $(shell $(1) -c 'import sys; v = sys.version_info[:2]; (3, 10) <= v <= (3, 13) and print("%d.%d" % v)' 2>/dev/null)
ifeq ($(origin PYTHON),undefined)
  PYTHON := $(if $(wildcard $(SETUP_STAMP)),$(VENV)/bin/python,$(firstword $(foreach p,python3 python3.13 python3.12 python3.11 python3.10,$(if $(call python_version,$(p)),$(p)))))
endif
PYTHON_VERSION := $(if $(PYTHON),$(call python_version,$(PYTHON)))

# torch-sys finds libtorch through the venv's python (LIBTORCH_USE_PYTORCH, DESIGN.md "libtorch and the build").
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
export NANOCHAT_PYTHON := $(VENV)/bin/python

.PHONY: help setup test-setup build test smoke speedrun chat serve image image-test clean FORCE

help:
	@echo "make setup     .venv with the pinned torch wheel and CUDA headers (manifests/python/runtime.lock), no apt;"
	@echo "               needs CPython 3.10-3.13 (PYTHON=... to pick one), a C++ compiler and a Rust toolchain"
	@echo "make test-setup  what tests and benchmarks add: the test lock (oracles, openai, selenium) and Debian's"
	@echo "               chromium, chromium-driver, nix-bin, python3.11 and debootstrap (apt-get as root or with sudo)"
	@echo "make build     build the release binary target/release/nanochat"
	@echo "make test      fmt + clippy + the whole test suite (what CI runs; runs make test-setup)"
	@echo "make smoke     the whole pipeline at tiny depth on CPU, offline -> report.md (DEVICE=cuda: on one GPU, bf16)"
	@echo "make speedrun  the real run on this machine's GPUs (PRESET=d20 by default)"
	@echo "make chat      talk to the model of the last smoke run (or of CHAT_BASE_DIR=...) in the terminal"
	@echo "make serve     the same model behind the web UI and the OpenAI-compatible API on port 8000"
	@echo "make image     the container image $(IMAGE) (docker run --gpus all --shm-size 16g nanochat speedrun; needs debootstrap)"
	@echo "make bench     speed and memory tables (tokenizer vs rustbpe/tiktoken, training vs the reference)"
	@echo "make gpu-check every CUDA/NCCL check and the GPU benchmarks in one script (needs an NVIDIA GPU)"
	@echo "make gpu-bundle stage the binaries gpu-check runs into target/gpu-bundle (for a GPU machine without cargo)"

# $(call need_debs,PACKAGE:COMMAND ...): installs (apt-get, as root or through password-less sudo) the Debian
# packages whose COMMAND (a name on PATH or a path) is missing; without root or such sudo, one line says what
# to install and make stops.
define need_debs
@missing=; for pair in $(1); do command -v "$${pair#*:}" >/dev/null || missing="$$missing $${pair%%:*}"; done; \
  if [ -z "$$missing" ]; then exit 0; fi; \
  if [ "$$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo=sudo; else \
    echo "error: missing Debian packages:$$missing. Install them (sudo apt-get install$$missing) and run make again"; exit 1; fi; \
  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq$$missing
endef

# What `make build` and `make speedrun` need: the runtime lock in .venv (no apt: the gloo headers are vendored
# under src/dist/vendor/gloo). The host brings a C++ compiler, a Rust toolchain and CPython 3.10-3.13.
setup: $(SETUP_STAMP)

$(SETUP_STAMP): manifests/python/runtime.lock $(if $(filter-out $(PYTHON_VERSION),$(file <$(SETUP_STAMP))),FORCE)
	@missing=; \
	  command -v "$${CXX:-c++}" >/dev/null || missing="$$missing; a C++ compiler ($${CXX:-c++}: sudo apt-get install g++)"; \
	  command -v cargo >/dev/null || missing="$$missing; a Rust toolchain, 1.89 or newer (https://rustup.rs)"; \
	  [ -n "$(PYTHON_VERSION)" ] || missing="$$missing; CPython 3.10-3.13 ($(if $(PYTHON),PYTHON=$(PYTHON) is not one,none of python3 python3.13 ... python3.10 runs); or set PYTHON=...)"; \
	  [ -z "$$missing" ] || { echo "error: make setup needs$${missing#;}"; exit 1; }
	@if [ -e $(VENV) ] && [ "$(call python_version,$(VENV)/bin/python)" != "$(PYTHON_VERSION)" ]; then \
	  echo "recreating .venv for CPython $(PYTHON_VERSION)"; rm -rf $(VENV); fi
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "error: $(PYTHON) -m venv failed; on Debian/Ubuntu: sudo apt-get install python$(PYTHON_VERSION)-venv"; exit 1; }
	$(VENV)/bin/pip install --quiet --require-hashes --only-binary :all: -r manifests/python/runtime.lock
	echo $(PYTHON_VERSION) > $@

# What `make test` and `make bench` add: the test lock (the Python oracles, the openai client, selenium) and the
# Debian packages chromium + chromium-driver (the chat page's browser test), nix-bin (the flake checks),
# python3.11 (tests/calculator_python.rs: the calculator follows CPython 3.11 whichever Python made the venv)
# and debootstrap (the image's local base, also for `make image`).
TEST_DEBS := chromium:/usr/bin/chromium chromium-driver:/usr/bin/chromedriver nix-bin:nix-instantiate \
  python3.11:python3.11
DEBOOTSTRAP := debootstrap:/usr/sbin/debootstrap
test-setup: $(TEST_STAMP)
	$(call need_debs,$(TEST_DEBS) $(DEBOOTSTRAP))

$(TEST_STAMP): $(SETUP_STAMP) manifests/python/test.lock
	$(VENV)/bin/pip install --quiet --require-hashes --only-binary :all: \
	  -r manifests/python/runtime.lock -r manifests/python/test.lock
	touch $@

FORCE:

build: setup
	cargo build --release --locked

test: test-setup build gpu-bundle
	cargo fmt --check
	cargo clippy --release --locked --all-targets -- -D warnings
	cargo test --release --locked
	$(MAKE) --no-print-directory image-test

# The image tests need a Docker engine; without one they cannot run, and this says so loudly.
image-test:
	@if docker info >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory image && \
	  NANOCHAT_TEST_IMAGE=$(IMAGE) cargo test --release --locked --test container -- --ignored --test-threads=1; \
	else \
	  echo "########################################################################"; \
	  echo "## WARNING: no Docker engine reachable (docker info failed):           ##"; \
	  echo "## the image build and the in-container smoke speedrun were NOT tested. ##"; \
	  echo "########################################################################"; \
	fi

image: build
	$(if $(BASE_IMAGE),,$(call need_debs,$(DEBOOTSTRAP)))
	@command -v docker >/dev/null || { echo "error: docker is not installed"; exit 1; }
	docker/stage-context.sh $(CURDIR)/target/image-context $(BIN) \
	  $$($(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
	base="$(BASE_IMAGE)"; [ -n "$$base" ] || base=$$(docker/build-base-image.sh nanochat-base:bookworm); \
	  docker build --build-arg BASE_IMAGE="$$base" \
	    --build-arg VERSION=$$($(BIN) --version | awk '{print $$2}') \
	    --build-arg GIT_COMMIT=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	    --build-arg TORCH_VERSION=$$($(BIN) --version | sed -n 's/.*libtorch \([^,]*\),.*/\1/p') \
	    -t $(IMAGE) $(CURDIR)/target/image-context
	@docker image inspect --format 'built $(IMAGE): {{.Id}}, {{.Size}} bytes' $(IMAGE)

# DEVICE=cuda runs the smoke pipeline on one GPU in bf16 instead of the CPU.
DEVICE ?= cpu
smoke: build
	$(if $(filter cuda,$(DEVICE)),CUDA_VISIBLE_DEVICES=$${CUDA_VISIBLE_DEVICES:-0}) $(BIN) speedrun --preset $(SMOKE_PRESET) --base-dir $(SMOKE_DIR) \
	  $(if $(filter cuda,$(DEVICE)),--set hardware.device=cuda --set hardware.gpus=1)
	cp $(SMOKE_DIR)/report/report.md $(SMOKE_DIR)/report/*.svg $(CURDIR)/
	@echo "report: $(CURDIR)/report.md"
	@echo "talk to the model it trained: make chat   (or: $(BIN) --base-dir $(SMOKE_DIR) chat)"
	@echo "serve it with the web UI:     make serve  (or: $(BIN) --base-dir $(SMOKE_DIR) serve)"

# The model `make chat`/`make serve` load: the smoke run's when there is one, else the default base dir's.
CHAT_BASE_DIR ?= $(if $(wildcard $(SMOKE_DIR)/report/report.md),$(SMOKE_DIR),$${NANOCHAT_BASE_DIR:-$$HOME/.cache/nanochat})
chat: build
	$(BIN) --base-dir $(CHAT_BASE_DIR) chat
# OpenMP threads that sleep while waiting instead of spinning: on a busy CPU the spinning of one replica's
# threads takes the time slices the others need (the README's serving benchmark). OMP_WAIT_POLICY=... overrides.
serve: build
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(BIN) --base-dir $(CHAT_BASE_DIR) serve

speedrun: build
	$(BIN) speedrun --preset $(PRESET)
	cp $${NANOCHAT_BASE_DIR:-$$HOME/.cache/nanochat}/report/report.md $${NANOCHAT_BASE_DIR:-$$HOME/.cache/nanochat}/report/*.svg $(CURDIR)/

clean:
	cargo clean

.PHONY: bench gpu-bundle gpu-check
# Benchmarks print tables; nothing here asserts a speed. Compare against the reference on the same machine.
bench: test-setup build
	@echo "== tokenizer: training vs rustbpe, encoding vs tiktoken (same corpus, same run) =="
	$(VENV)/bin/python tests/bench/bench_compare.py --corpus-mb 40 --vocab 4096 65536 --encode-mb 20
	@echo "== base training: step time and peak RSS on CPU, ours (chunked and full-logits loss) vs the reference's step =="
	$(VENV)/bin/python tests/bench/bench_train.py --bin $(BIN) --depths 4 8
	@echo "== pointwise: the fused relu² and rotary autograd functions vs the same ops one by one (CPU) =="
	$(BIN) bench pointwise --depth 4 --batch 4 --seq-len 512
	@echo "== generation: our engine vs the reference's Engine (same weights, prompt, greedy; CPU) =="
	$(VENV)/bin/python tests/bench/bench_engine.py --bin $(BIN) --depth 4
	@echo "== chat RL: samples/s and tokens/s of generation and of training at the smoke size (CPU) =="
	$(BIN) --preset smoke bench rl
	@echo "== CORE: base-eval examples/s vs the reference's core_eval (same weights, tokenizer and bundle; CPU) =="
	$(VENV)/bin/python tests/bench/bench_core.py --bin $(BIN) --depth 4
	@echo "== server load: nanochat serve on 127.0.0.1 at 1, 8 and 32 streaming clients (d2 weights; CPU) =="
	$(VENV)/bin/python tests/bench/bench_serve.py --bin $(BIN)
	@echo "== dataloader: tokens/s on this machine (the smoke data and tokenizer; prepared here when missing) =="
	for stage in data tok-train; do $(BIN) speedrun --preset smoke --base-dir $(SMOKE_DIR) --only $$stage || exit 1; done
	$(BIN) --preset smoke --base-dir $(SMOKE_DIR) bench dataloader
	@echo "== chat data paths: mid-train stream and SFT batches, tokens/s (smoke data; d20 batch shapes) =="
	$(BIN) --preset d20 --base-dir $(SMOKE_DIR) bench chat-data
	@echo "== sandbox: HumanEval's 164 canonical solutions run in the code sandbox, programs/s at 1 and 4 workers =="
	$(BIN) bench sandbox --problems manifests/data/chat_smoke/openai/openai_humaneval/openai_humaneval/test-00000-of-00001.parquet

# On a machine with NVIDIA GPUs, one script runs every CUDA/NCCL check (tests/gpu/gpu_check.sh): the doctor, the
# bf16 dtype policy and the fused attention kernel, the smoke speedrun on one GPU, NCCL all-reduce bandwidth, the
# fused pointwise functions vs op by op, d20 training throughput and MFU next to the reference (NANOCHAT_REFERENCE:
# a karpathy/nanochat checkout at 10231df, eager and torch.compile'd), and decode tokens/s. `make gpu-bundle` stages
# it with all it runs and reads (the smoke shards of SMOKE_DIR) for a GPU machine with torch 2.11 and no cargo or
# network (tests/gpu/stage_bundle.sh); the precision test binary is the artifact whose target is `precision`.
GPU_BUNDLE := $(CURDIR)/target/gpu-bundle
gpu-bundle: build
	exe=$$(cargo test --release --locked --test precision --no-run --message-format=json | \
	  $(VENV)/bin/python -c 'import json,sys; print(next(m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == "precision"))') && \
	  tests/gpu/stage_bundle.sh $(GPU_BUNDLE) $(BIN) $$exe $(SMOKE_DIR) "$(NANOCHAT_REFERENCE)"

gpu-check: gpu-bundle
	$(GPU_BUNDLE)/gpu_check.sh $(CURDIR)/target/gpu-check
