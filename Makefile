# One command sets up and tests (`make test`); one shows the operator working (`make demo`).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck unit demo crds e2e e2e-kind e2e-real testbed bench clean wheel image

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Two pytest workers, each with its own session kubesim and operator (pytest-xdist); with worksteal
# a worker that runs dry takes tests still queued for the other. More workers than cores make the timing
# of the live tests flaky, so the count is fixed rather than `auto` (which counts a container's host).
TEST_WORKERS ?= 2

unit: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal

test: lint typecheck unit

crds: $(STAMP)
	$(BIN)/python -m scaleset_operator.api.crdgen crds

demo: $(STAMP)
	$(BIN)/python -m scaleset_operator.demo

# The same e2e suite against the cluster named by KUBECONFIG (kind, where Docker runs).
e2e: $(STAMP)
	$(BIN)/pytest -q tests/integration tests/kubesim

e2e-kind: $(STAMP)
	kind create cluster --name scaleset-e2e --kubeconfig $(CURDIR)/.kind.kubeconfig
	KUBESIM_USE_KUBECONFIG=1 KUBECONFIG=$(CURDIR)/.kind.kubeconfig $(MAKE) e2e; rc=$$?; kind delete cluster --name scaleset-e2e; exit $$rc

# The wheel the image installs; `make image` builds both stages of the Dockerfile where Docker runs.
IMAGE ?= ghcr.io/scaleset-operator/scaleset-operator:0.1.0

wheel: $(STAMP)
	$(BIN)/pip wheel -q --no-deps --wheel-dir dist .

image:
	docker build -t $(IMAGE) .

# A real control plane built from its Go modules (testbed/), cached by the versions in go.sum and its
# own source: a changed testbed/*.go builds into a folder of its own, never over a binary in use.
TESTBED_KEY := $(shell cat testbed/go.sum testbed/go.mod $(sort $(wildcard testbed/*.go)) 2>/dev/null | sha256sum | cut -c1-16)
TESTBED_BIN := .cache/testbed/$(TESTBED_KEY)/testbed
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)

$(TESTBED_BIN): testbed/go.mod testbed/go.sum $(wildcard testbed/*.go)
	mkdir -p $(dir $@)
	cd testbed && GOTOOLCHAIN=local $(GO) build -o ../$@ .

testbed: $(TESTBED_BIN)
	@echo $(TESTBED_BIN)

# On the testbed: the integration suite (the operator under manifests/rbac.yaml's ServiceAccount), then
# kubesim's own tests (each cluster a testbed of its own); both run, and either failing fails.
E2E_REAL = TESTBED_BIN=$(CURDIR)/$(TESTBED_BIN) KUBESIM_TESTBED=1 $(BIN)/pytest -q -p no:cacheprovider

e2e-real: $(STAMP) $(TESTBED_BIN)
	$(E2E_REAL) tests/integration; operator=$$?; \
	$(E2E_REAL) tests/kubesim; kubesim=$$?; \
	test $$operator -eq 0 && test $$kubesim -eq 0

bench: $(STAMP)
	$(BIN)/python bench/kubesim_scale.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build
