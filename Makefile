# One command sets up and tests (`make test`); one shows the operator working (`make demo`).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck unit demo crds e2e e2e-kind e2e-real testbed bench clean wheel image lock lowest

# Exact versions with their hashes: requirements.lock is what the image installs (the operator alone),
# requirements-dev.lock what `make test` and `make demo` install (with the [sim] and [dev] extras).
# Nothing is resolved at install time, and a download whose hash differs is refused.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock

$(STAMP): pyproject.toml $(DEV_LOCK)
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r $(DEV_LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Resolve pyproject.toml again into both locks (after changing a dependency): uv, from the dev lock.
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
	--universal --custom-compile-command 'make lock'

lock:
	test -x $(BIN)/uv || { test -d $(VENV) || $(PY) -m venv $(VENV); $(BIN)/pip install -q uv; }
	$(UV_COMPILE) --output-file $(LOCK)
	$(UV_COMPILE) --extra sim --extra dev --output-file $(DEV_LOCK)

# The lower bounds of pyproject.toml are true: the oldest version of each direct dependency that they
# allow, installed in a new environment, passes the fast tests.
lowest: $(STAMP)
	rm -rf .lowest && $(PY) -m venv .lowest
	$(BIN)/uv pip compile pyproject.toml --quiet --extra sim --extra dev --resolution lowest-direct \
		--python-version 3.11 --output-file .lowest/requirements.txt
	.lowest/bin/pip install -q -r .lowest/requirements.txt
	.lowest/bin/pip install -q --no-deps --no-build-isolation -e .
	.lowest/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) tests/planning tests/unit tests/imds

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

# A real control plane built from its Go modules (testbed/), cached by the versions in go.sum.
TESTBED_KEY := $(shell cat testbed/go.sum testbed/go.mod 2>/dev/null | sha256sum | cut -c1-16)
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
	rm -rf $(VENV) .lowest .pytest_cache .mypy_cache .ruff_cache dist build
