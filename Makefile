# nanochat — set-up, build, tests and runs. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := $(CURDIR)/.venv
SETUP_STAMP := $(VENV)/.setup-done
BIN := $(CURDIR)/target/release/nanochat
PRESET ?= d20
SMOKE_DIR ?= $(CURDIR)/target/smoke
IMAGE ?= nanochat:latest
# Pin of the image's base: leave empty to debootstrap Debian 12 locally (no registry needed) and pin its id.
BASE_IMAGE ?=
SITE_PACKAGES = $(VENV)/lib/python3.11/site-packages

# torch-sys finds libtorch through the venv's python (LIBTORCH_USE_PYTORCH, DESIGN.md "libtorch and the build").
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
export NANOCHAT_PYTHON := $(VENV)/bin/python

.PHONY: help setup build test smoke speedrun chat serve image image-test clean

help:
	@echo "make setup     install the pinned torch wheel + CUDA headers into .venv and libgloo-dev (idempotent)"
	@echo "make build     build the release binary target/release/nanochat"
	@echo "make test      fmt + clippy + the whole test suite (what CI runs)"
	@echo "make smoke     the whole pipeline at tiny depth on CPU, offline -> report.md (DEVICE=cuda: on one GPU, bf16)"
	@echo "make speedrun  the real run on this machine's GPUs (PRESET=d20 by default)"
	@echo "make chat      talk to the model of the last smoke run (or of CHAT_BASE_DIR=...) in the terminal"
	@echo "make serve     the same model behind the web UI and the OpenAI-compatible API on port 8000"
	@echo "make image     the container image $(IMAGE) (docker run --gpus all nanochat speedrun)"
	@echo "make bench     speed and memory tables (tokenizer vs rustbpe/tiktoken, training vs the reference)"
	@echo "make gpu-check every CUDA/NCCL check and the GPU benchmarks in one script (needs an NVIDIA GPU)"
	@echo "make gpu-bundle stage the binaries gpu-check runs into target/gpu-bundle (for a GPU machine without cargo)"

DEBIAN_TOOLS := /usr/include/gloo/config.h /usr/sbin/debootstrap /usr/bin/nix-instantiate /usr/bin/chromium /usr/bin/chromedriver

setup: $(SETUP_STAMP) $(DEBIAN_TOOLS)

$(SETUP_STAMP): manifests/python.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || \
	  { echo "error: manifests/python.lock pins CPython 3.11 wheels; install python3.11 (or set PYTHON=...)"; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes --no-deps -r manifests/python.lock
	touch $@

# Debian packages: gloo headers (the c10d shim), debootstrap (the image's local base), nix-bin (flake checks),
# chromium + chromium-driver (the chat page's browser test). One recipe for the group: any one missing installs
# them all (apt-get skips what is there).
$(DEBIAN_TOOLS) &:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libgloo-dev debootstrap nix-bin chromium chromium-driver

build: setup
	cargo build --release --locked

test: build gpu-bundle
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
	@command -v docker >/dev/null || { echo "error: docker is not installed"; exit 1; }
	docker/stage-context.sh $(CURDIR)/target/image-context $(BIN) $(SITE_PACKAGES)
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
	$(if $(filter cuda,$(DEVICE)),CUDA_VISIBLE_DEVICES=$${CUDA_VISIBLE_DEVICES:-0}) $(BIN) speedrun --preset smoke --base-dir $(SMOKE_DIR) \
	  $(if $(filter cuda,$(DEVICE)),--set hardware.device=cuda --set hardware.gpus=1)
	cp $(SMOKE_DIR)/report/report.md $(SMOKE_DIR)/report/*.svg $(CURDIR)/
	@echo "report: $(CURDIR)/report.md"
	@echo "talk to the model it trained: make chat   (or: $(BIN) --base-dir $(SMOKE_DIR) chat)"
	@echo "serve it with the web UI:     make serve  (or: $(BIN) --base-dir $(SMOKE_DIR) serve)"

# The model `make chat`/`make serve` load: the smoke run's when there is one, else the default base dir's.
CHAT_BASE_DIR ?= $(if $(wildcard $(SMOKE_DIR)/report/report.md),$(SMOKE_DIR),$${NANOCHAT_BASE_DIR:-$$HOME/.cache/nanochat})
chat: build
	$(BIN) --base-dir $(CHAT_BASE_DIR) chat
serve: build
	$(BIN) --base-dir $(CHAT_BASE_DIR) serve

speedrun: build
	$(BIN) speedrun --preset $(PRESET)
	cp $${NANOCHAT_BASE_DIR:-$$HOME/.cache/nanochat}/report/report.md $${NANOCHAT_BASE_DIR:-$$HOME/.cache/nanochat}/report/*.svg $(CURDIR)/

clean:
	cargo clean

.PHONY: bench gpu-bundle gpu-check
# Benchmarks print tables; nothing here asserts a speed. Compare against the reference on the same machine.
bench: build
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
