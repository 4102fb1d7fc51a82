# sympozium-controller
SHELL := /usr/bin/env bash
export GOTOOLCHAIN := local

BIN ?= bin/sympozium-controller
IMG ?= sympozium-controller:dev
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
NONGEN = $(shell go list ./... | grep -v /pkg/generated/)
# Short fuzz runs of the phase state machine (task mode, and every backend) are part of the test suite.
FUZZTIME ?= 20s

.PHONY: all generate verify-codegen lint test unit-test fuzz build image image-docker verify clean demo sandbox-up sandbox-down bench monitoring

all: build

generate:
	./hack/update-codegen.sh

verify-codegen:
	./hack/verify-codegen.sh

# vet and fix type-check against the dependencies compiled as `build` (and
# the e2e tests' builds of the binaries) compile them, static and -trimpath,
# so that a cold run compiles client-go and the rest once for all of them,
# not once per flag set (-race, which needs cgo, is the one other set).
STATIC := CGO_ENABLED=0 GOFLAGS="$(GOFLAGS) -trimpath"

lint:
	@out=$$(gofmt -l cmd pkg hack); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(STATIC) go vet ./...
	$(STATIC) go fix -diff $(NONGEN)
	@if go list -f '{{join .Imports "\n"}}' ./pkg/agentrun/... ./pkg/schedule/... | grep -E '^k8s.io/(client-go|klog)'; then \
		echo "pkg/agentrun and pkg/schedule must stay pure: no client-go or klog imports"; exit 1; fi

build:
	CGO_ENABLED=0 go build -trimpath -ldflags='$(LDFLAGS)' -o $(BIN) ./cmd/sympozium-controller
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/kubectl-agentrun ./cmd/kubectl-agentrun

# Every test: unit tests, fixture tests, and the end-to-end tests on a real
# local control plane (built from pinned modules on first use, then cached)
# and on a real node (hack/e2e, hack/e2e/realnode, hack/localcp's smoke
# test: they run only with SYMPOZIUM_E2E=1).
test:
	SYMPOZIUM_E2E=1 go test -race -count=1 -timeout 60m ./...
	@if [ -d pkg/agentrun/phase ]; then go test -run '^$$' -fuzz '^FuzzNext$$' -fuzztime $(FUZZTIME) ./pkg/agentrun/phase; fi
	@if [ -d pkg/agentrun/phase ]; then go test -run '^$$' -fuzz '^FuzzNextBackends$$' -fuzztime $(FUZZTIME) ./pkg/agentrun/phase; fi

# Unit tests only: no control plane (a plain go test ./... is the same).
unit-test:
	go test -race -count=1 ./...

# The controller's image without an image engine: an OCI image layout tar of
# the static binary of make build, as the Dockerfile builds it (user 65532,
# no shell), named $(IMG) (Kubernetes reads sympozium-controller:dev as
# docker.io/library/sympozium-controller:dev). Also the test agent and the
# pause image of a real node (hack/testagent). Writes bin/*.oci.tar; the
# README says how to import them.
image: build
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/sympozium-testagent ./hack/testagent
	go run ./hack/ociimage/cmd/mkimage -controller $(BIN) -name $(IMG) -testagent bin/sympozium-testagent -out bin

# The same image with a Docker engine, from the Dockerfile.
image-docker:
	docker build -t $(IMG) .

verify: verify-codegen lint build test

# The newcomer command: a local control plane, the controller, a sample run to Succeeded.
# KEEP=1 make demo (= make sandbox-up) leaves the control plane and the controller
# running in the background; make sandbox-down stops both (it needs nothing in bin/).
# REAL_NODE=1 (as root): a real node (containerd + kubelet, hack/realnode) instead of
# kwok, the controller installed with kubectl apply -k as pods of its Deployment, and
# the agents real containers of the test agent.
demo:
	./hack/demo.sh

sandbox-up:
	KEEP=1 ./hack/demo.sh

sandbox-down:
	./hack/demo.sh down

# Scale and performance figures on a local control plane (hack/bench): a
# 1000-run burst against a lifecycle client, the unthrottled minimal client
# (three rounds, the goals read on their median) and bare Jobs, API writes
# per run, admission order, steady-state API traffic, latencies, then memory,
# CPU per run, restarts and pruning with 10,000 and 50,000 finished runs kept;
# first, on one real node (hack/realnode, as root; its own control plane),
# run created → agent started for cold and warm-pool runs beside bare Jobs
# (alone: go run ./hack/bench -phases realnode).
# About an hour on a quiet 2-core machine (the estimate is printed first);
# rewrites the generated table of docs/bench.md.
BENCH_FLAGS ?= -runs 1000 -memory-runs 10000,50000
bench:
	go run ./hack/bench $(BENCH_FLAGS) -update docs/bench.md

# bin/ only: a running sandbox keeps what it needs in .localcp/demo.
clean:
	rm -rf bin

# The monitoring mixin alone (manifests/monitoring): the PrometheusRule up
# to date, promtool check rules and test rules (Debian's prometheus package,
# installed by hack/prometheus.sh when missing). go test runs it too
# (pkg/metrics/mixin_test.go).
monitoring:
	./hack/monitoring.sh check
