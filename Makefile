# MachPay: the two commands are `make demo` and `make test`.
# Everything expensive (the venv, Kafka jars, cargo target) is cached under
# $(MACHPAY_CACHE) so a warm run is incremental and a fresh machine still works.

MACHPAY_CACHE ?= $(HOME)/.cache/machpay
VENV ?= $(or $(MACHPAY_VENV),$(MACHPAY_CACHE)/venv)
PY := $(VENV)/bin/python
export MACHPAY_CACHE
export MACHPAY_VENV := $(VENV)

COMPONENTS := core sdk gateway ingest streams settle api demo
PY_PATHS := $(foreach c,$(COMPONENTS),$(c)/src $(c)/tests) tests bench conftest.py

.PHONY: help setup demo test test-python test-rust localnet-build lint fmt bench kafka-up kafka-down clean-cache

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

setup:  ## Create the venv under $(MACHPAY_CACHE) and install every component (editable).
	@bash scripts/setup-venv.sh

demo: setup  ## Start the local stack (Kafka, Solana runtime, services), run agents paying, show what happened.
	@$(VENV)/bin/machpay demo

test: setup lint test-python test-rust  ## Install what is needed and run every test (Python and Rust).

lint: setup  ## ruff (lint + format check) and mypy --strict.
	@$(VENV)/bin/ruff check $(wildcard $(PY_PATHS))
	@$(VENV)/bin/ruff format --check $(wildcard $(PY_PATHS))
	@$(VENV)/bin/mypy $(wildcard $(PY_PATHS))

test-python: setup localnet-build  ## pytest: unit, integration (real local Kafka and Solana runtime) and end-to-end tests.
	@$(PY) -m pytest

# Built before pytest: the session fixture would build it too, but a cold
# build (minutes) would run into pytest's per-test timeout.
localnet-build:  ## cargo build of the local Solana node (machpay-localnet) into $(MACHPAY_CACHE)/cargo-target.
	cd programs && CARGO_TARGET_DIR=$(MACHPAY_CACHE)/cargo-target cargo build -p machpay-localnet --bin machpay-localnet

test-rust:  ## cargo test of the Anchor workspace in programs/ (native; includes the IDL drift check).
	cd programs && CARGO_TARGET_DIR=$(MACHPAY_CACHE)/cargo-target cargo test --workspace

fmt: setup  ## Apply ruff fixes and formatting.
	@$(VENV)/bin/ruff check --fix $(wildcard $(PY_PATHS))
	@$(VENV)/bin/ruff format $(wildcard $(PY_PATHS))

bench: setup  ## Run the benchmarks; figures go to bench/results/*.json.
	@$(PY) -m bench

kafka-up: setup  ## Start the local single-node Kafka broker (KRaft) and create the topics.
	@$(VENV)/bin/machpay kafka up

kafka-down: setup  ## Stop the local Kafka broker.
	@$(VENV)/bin/machpay kafka down

clean-cache:  ## Remove the venv (Kafka jars and data stay; see docs/kafka.md).
	rm -rf $(VENV)
