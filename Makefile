# kubectl-ippool: build, test, demo, bench, dist.
# `make test` is what CI runs (.ci/run). Everything here installs what it
# needs itself: Go modules and crates are fetched into their default caches.

SHELL := /bin/bash
CARGO ?= cargo
# Two cores: run end-to-end test binaries one at a time, two tests at once.
E2E_THREADS ?= 2
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

.PHONY: all build kubesim kubesim-test test lint unit demo bench faults dist dist-check dataplane cluster-up cluster-down

all: build

build:
	$(CARGO) build --release

kubesim:
	scripts/build-kubesim.sh

## Format and lint (seconds), unit tests, then every test target in tests/
## (a file, or a directory with a main.rs): CLI tests, the krew install test
## and the end-to-end suites on local clusters; every target runs, and the
## failed ones are named at the end.
test: kubesim lint kubesim-test
	$(CARGO) build --tests
	$(CARGO) test --bin kubectl-ippool
	@failed=""; for f in tests/*.rs tests/*/main.rs; do \
	  case $$f in */main.rs) t=$$(basename $$(dirname $$f));; *) t=$$(basename $$f .rs);; esac; \
	  threads=$(E2E_THREADS); \
	  case $$t in krew_install) threads=1;; esac; \
	  echo "== $$f (disk free: $$(df -h --output=avail . | tail -1 | tr -d ' '))"; \
	  $(CARGO) test --test $$t -- --test-threads=$$threads || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "== failed:$$failed"; exit 1; fi

## kubesim's own Go unit tests (the dataplane package: no root needed).
kubesim-test:
	cd tools/kubesim && PATH="$$PATH:/usr/local/go/bin" GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=readonly" GOSUMDB=off CGO_ENABLED=0 go test ./dataplane/

lint:
	$(CARGO) fmt --check
	python3 scripts/import-graph.py --self-test
	python3 scripts/import-graph.py
	$(CARGO) clippy --all-targets -- -D warnings

unit:
	$(CARGO) test --bin kubectl-ippool
	$(CARGO) test --test cli

## The dataplane suite alone (kubesim --dataplane, real traffic; needs root
## and nft); `make test` runs it too.
dataplane: kubesim
	$(CARGO) test --test dataplane_e2e -- --test-threads=$(E2E_THREADS)

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

## Release archives for krew (linux, darwin: amd64, arm64; windows/amd64),
## plugin.yaml's entries for them, the in-cluster image (OCI archive): dist/.
dist:
	scripts/dist.sh

## Every platform's archive and the image, built cheaply (the dist-check
## profile) into target/dist-check and checked: contents, checksums, binary
## kinds; linux/arm64 under qemu-user and from its image, windows/amd64
## under wine. Slow: see README "Install".
dist-check: kubesim
	scripts/dist-tools.sh check
	mkdir -p target/dist-check && cp plugin.yaml target/dist-check/ippool.yaml
	DIST_PROFILE=dist-check DIST_DIR=target/dist-check DIST_MANIFEST=target/dist-check/ippool.yaml scripts/dist.sh
	$(CARGO) test --test dist_check -- --ignored --test-threads=1

## The fault suite at full size (20 crash trials: one kill at each of the 10 kill points, then seeded random ones); CI runs the 10 in `make test`.
faults: kubesim
	scripts/faults.sh
