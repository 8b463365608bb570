# The single entry point. `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
VALIDATE := .cache/venv/bin/kubernetes-validate
K8S_VERSION ?= 1.36.0
EXPORT ?= $(CURDIR)/.cache/export
STATE ?= $(CURDIR)/.cache/state
LISTEN ?= 127.0.0.1:2049

.PHONY: help demo run test deps lint crds validate-crds unit build bench bench-quick

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

demo: ## openefs end to end without a cluster: nfsd (TLS, access point), CSI node plugin + tls-proxy in a qemu guest, two pods writing and cross-checking (flags via DEMO_ARGS)
	bash e2e/scripts/demo.sh $(DEMO_ARGS)

run: ## serve $(EXPORT) over NFS on $(LISTEN) with openefs-nfsd (release build), client records in $(STATE)
	bash .ci/apt-install.sh libssl-dev pkg-config
	mkdir -p $(EXPORT)
	$(CARGO) run --release -p openefs-nfsd -- serve --export $(EXPORT) --listen $(LISTEN) --state-dir $(STATE)

test: deps lint validate-crds build ## everything CI runs: deps, fmt, clippy, CRD checks, all tests
	$(CARGO) test --workspace

deps: ## install what the tests need (idempotent)
	bash .ci/deps.sh

lint: ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

crds: ## regenerate crds/*.yaml and the chart's copy
	$(CARGO) run -q -p openefs-crds --bin crdgen

validate-crds: deps ## check the generated CRDs are current and valid Kubernetes objects
	$(CARGO) run -q -p openefs-crds --bin crdgen -- --check
	$(VALIDATE) --strict --quiet -k $(K8S_VERSION) crds/*.yaml charts/openefs/crds/*.yaml

build: ## build every binary (the e2e tests run them)
	$(CARGO) build --workspace --bins

bench: ## openefs-nfsd vs nfs-ganesha side by side (docs/benchmarks.md); flags via BENCH_ARGS
	bash e2e/scripts/bench.sh $(BENCH_ARGS)

bench-quick: ## a smoke run of the benchmark (about a minute)
	bash e2e/scripts/bench.sh --quick $(BENCH_ARGS)
