# kubectl-ippool: build, test, demo, bench, dist.
# `make test` is what CI runs (.ci/run). Everything here installs what it
# needs itself: Go modules and crates are fetched into their default caches.

SHELL := /bin/bash
CARGO ?= cargo
# Two cores: run end-to-end test binaries one at a time, two tests at once.
E2E_THREADS ?= 2
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

.PHONY: all build kubesim test unit demo bench faults dist cluster-up cluster-down

all: build

build:
	$(CARGO) build --release

kubesim:
	scripts/build-kubesim.sh

## Unit and CLI tests (no cluster), then end-to-end tests on fresh local clusters.
test: kubesim
	$(CARGO) build --tests
	$(CARGO) test --bin kubectl-ippool
	$(CARGO) test --test cli
	$(CARGO) test --test krew_install -- --test-threads=1
	$(CARGO) test --test status_e2e -- --test-threads=$(E2E_THREADS)
	@for t in rbac_e2e verify_e2e migrate_e2e bad_inputs faults_e2e; do \
	  if [ -f tests/$$t.rs ]; then $(CARGO) test --test $$t -- --test-threads=$(E2E_THREADS) || exit 1; fi; \
	done

unit:
	$(CARGO) test --bin kubectl-ippool
	$(CARGO) test --test cli

## Start the local cluster in the background (KUBESIM_DIR, default .kubesim).
cluster-up:
	scripts/cluster-up.sh $(ARGS)

cluster-down:
	scripts/cluster-down.sh

## Start the local cluster with the seed scenario and run a real migration.
demo: kubesim
	scripts/demo.sh

## Scale and throughput figures (see README "Performance").
bench: kubesim
	scripts/bench.sh

## Release archive for krew (linux/amd64) and plugin.yaml with its sha256.
dist:
	scripts/dist.sh

## The fault suite at full size (20 crash trials, every phase boundary); CI runs a bounded form in `make test`.
faults: kubesim
	scripts/faults.sh
