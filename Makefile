# imcluster — the two commands a newcomer needs are `make dev` and `make test`.
# Everything else here is for the people who work on it. See README.md.

SHELL := /usr/bin/env bash
GO    ?= go
BIN   := bin
IMC_CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/imcluster
GOLANGCI_VERSION := v2.15.0
GOLANGCI := $(IMC_CACHE_DIR)/golangci-lint-$(GOLANGCI_VERSION)/golangci-lint

.PHONY: all
all: build

##@ The two commands

.PHONY: dev
dev: deps-up ## Bring up a local IM cluster on real dependencies and show it working.
	@if [ -x hack/dev.sh ]; then hack/dev.sh start; else hack/deps.sh status; hack/deps.sh env; fi

.PHONY: test
test: ## Install, start, test against, and stop the real dependency stack.
	hack/test.sh

.PHONY: chaos
chaos: ## The fault suite (test/chaos) on a stack of its own: kill -9 and SIGSTOP of every tier and dependency under load (hack/chaos.sh; CHAOS_FLAGS narrows it).
	hack/chaos.sh $(CHAOS_FLAGS)

##@ Development

.PHONY: build
build: ## Build every binary into ./bin.
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ ./cmd/...

.PHONY: image
image: ## The one imcluster image without Docker (podman, FROM scratch) and its archive (hack/image.sh).
	hack/image.sh

.PHONY: cluster-up
cluster-up: ## A real local cluster (control plane + one real node, CoreDNS) as root; prints its env (hack/cluster.sh).
	hack/cluster.sh up
	@hack/cluster.sh env

.PHONY: cluster-down
cluster-down: ## Stop it and remove what it left (processes, iptables chains, bridge, mounts, cgroups).
	hack/cluster.sh down

.PHONY: dev-down
dev-down: ## Stop what make dev started (services and dependencies).
	@if [ -x hack/dev.sh ]; then hack/dev.sh stop; fi
	hack/deps.sh stop

.PHONY: deps-up
deps-up: ## Install (cached) and start Kafka, Cassandra and etcd; wait until ready.
	hack/deps.sh start kafka cassandra etcd

.PHONY: deps-down
deps-down: ## Stop Kafka, Cassandra and etcd.
	hack/deps.sh stop kafka cassandra etcd

.PHONY: deps-status
deps-status: ## One line per dependency.
	@hack/deps.sh status kafka cassandra etcd kube helm

.PHONY: deps-install
deps-install: ## Fetch and build every dependency into the cache.
	hack/deps.sh install

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -w $$(git ls-files '*.go')

.PHONY: lint
lint: $(GOLANGCI) ## gofmt check, go vet and golangci-lint.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOLANGCI) run ./...

$(GOLANGCI):
	@mkdir -p $(dir $@)
	cd $(IMC_CACHE_DIR) && GOBIN=$(dir $@) GOFLAGS=-mod=mod $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)

.PHONY: help
help: ## This list.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ { printf "  %-14s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Operator (api/, controllers/, config/, charts/; see hack/tools/controller-gen)

CONTROLLER_GEN_SH := hack/tools/controller-gen/manifests.sh

.PHONY: generate
generate: ## Deepcopy code of api/ (controller-gen).
	$(CONTROLLER_GEN_SH) generate

.PHONY: manifests
manifests: generate ## CRD and RBAC from the markers into config/ and the Helm chart.
	$(CONTROLLER_GEN_SH) manifests

.PHONY: check-manifests
check-manifests: ## Fail if a generated file is stale (make test runs it as a Go test too).
	$(CONTROLLER_GEN_SH) check

.PHONY: helm-lint
helm-lint: ## helm lint the operator chart with default and full values, and with the dashboards and alerts on.
	hack/deps.sh install helm
	eval "$$(hack/deps.sh env)" && for f in "" "-f test/operator/testdata/values-full.yaml" \
		"--set grafanaDashboard.create=true,prometheusRule.enabled=true"; do \
		"$$IMC_HELM" lint --strict charts/imcluster-operator $$f || exit 1; done
