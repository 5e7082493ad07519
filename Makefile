# One command sets up and tests (`make test`); one shows the operator working (`make demo`).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck unit demo crds e2e e2e-kind e2e-real testbed bench clean wheel image lock lowest kstatus helm release readme-picture

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
	$(BIN)/lint-imports --no-cache

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

# The README's picture: the plan of the examples drawn by `scaleset plan --svg` (tests/unit/test_docs.py
# checks that the committed file is what this draws today).
README_PICTURE := docs/images/rollout.svg
README_PICTURE_PLAN := examples/scaleset.yaml --policy examples/upgradepolicy.yaml --instance-start 20s

readme-picture: $(STAMP)
	mkdir -p $(dir $(README_PICTURE))
	$(BIN)/scaleset plan $(README_PICTURE_PLAN) -o svg > $(README_PICTURE)

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
# It reports the version of the Kubernetes modules it is built from (so `kubectl version` and a chart's
# kubeVersion work), stamped as Kubernetes' own build stamps it (hack/lib/version.sh); the key follows.
KUBE_VERSION := $(shell sed -n 's|^[[:space:]]*k8s.io/kubernetes \(v[0-9][0-9.]*\).*|\1|p' testbed/go.mod)
KUBE_MINOR := $(word 2,$(subst ., ,$(KUBE_VERSION)))
TESTBED_LDFLAGS := $(foreach pkg,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(pkg).gitVersion=$(KUBE_VERSION) -X $(pkg).gitMajor=1 -X $(pkg).gitMinor=$(KUBE_MINOR) \
	-X $(pkg).gitCommit= -X $(pkg).gitTreeState=clean)
# kubesim/testbed.py (cached_binary) computes the same key: change TESTBED_RECIPE in both places.
TESTBED_RECIPE := version stamped from go.mod
TESTBED_KEY := $(shell (cat testbed/go.sum testbed/go.mod $(sort $(wildcard testbed/*.go)); echo '$(TESTBED_RECIPE)') 2>/dev/null | sha256sum | cut -c1-16)
TESTBED_BIN := .cache/testbed/$(TESTBED_KEY)/testbed
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)

$(TESTBED_BIN): testbed/go.mod testbed/go.sum $(wildcard testbed/*.go)
	mkdir -p $(dir $@)
	cd testbed && GOTOOLCHAIN=local $(GO) build -ldflags '$(TESTBED_LDFLAGS)' -o ../$@ .

testbed: $(TESTBED_BIN)
	@echo $(TESTBED_BIN)

# The tools the chart and status tests run, built from the Go module proxy (tools/*/go.mod) and cached
# like the testbed, by their go.sum: kstatus (the status library of Flux, kpt and cli-utils) and helm.
KSTATUS_KEY := $(shell cat tools/kstatus/go.sum tools/kstatus/go.mod tools/kstatus/main.go 2>/dev/null | sha256sum | cut -c1-16)
KSTATUS_BIN := .cache/kstatus/$(KSTATUS_KEY)/kstatus
HELM_VERSION := $(shell sed -n 's|^\(require\)*[[:space:]]*helm.sh/helm/v4 \(v[0-9][0-9.]*\).*|\2|p' tools/helm/go.mod)
HELM_LDFLAGS := -s -w -X helm.sh/helm/v4/internal/version.version=$(HELM_VERSION)
HELM_KEY := $(shell (cat tools/helm/go.sum tools/helm/go.mod; echo '$(HELM_LDFLAGS)') 2>/dev/null | sha256sum | cut -c1-16)
HELM_BIN := .cache/helm/$(HELM_KEY)/helm

$(KSTATUS_BIN): tools/kstatus/go.mod tools/kstatus/go.sum tools/kstatus/main.go
	mkdir -p $(dir $@)
	cd tools/kstatus && GOTOOLCHAIN=local $(GO) build -o ../../$@ .

# helm reports the version it is built from (`helm version`), as its own Makefile stamps it.
$(HELM_BIN): tools/helm/go.mod tools/helm/go.sum
	mkdir -p $(dir $@)
	cd tools/helm && GOTOOLCHAIN=local $(GO) build -ldflags '$(HELM_LDFLAGS)' \
		-o ../../$@ helm.sh/helm/v4/cmd/helm

# What a user installs from: the wheel (the CLI and kubectl plugin, `pipx install`), install.yaml (one file:
# the kustomize base with the image by digest), the packaged chart and the CHANGELOG, in $(DIST).
# IMAGE_DIGEST is the digest of the pushed image: `make release IMAGE_DIGEST=sha256:...`.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_REPO ?= ghcr.io/scaleset-operator/scaleset-operator
IMAGE_DIGEST ?=
DIST ?= dist
KUBECTL ?= kubectl

release: $(STAMP) $(HELM_BIN)
	@case "$(IMAGE_DIGEST)" in sha256:????????????????????????????????????????????????????????????????) ;; \
	  *) echo "make release needs IMAGE_DIGEST=sha256:<64 hex digits>, the digest of $(IMAGE_REPO):$(VERSION)"; exit 2;; esac
	rm -rf $(DIST) && mkdir -p $(DIST)/bundle
	$(BIN)/pip wheel -q --no-deps --wheel-dir $(DIST) .
	printf 'resources: [%s]\nimages:\n  - name: %s\n    digest: %s\n' \
		"$$(realpath -m --relative-to=$(DIST)/bundle manifests)" '$(IMAGE_REPO)' '$(IMAGE_DIGEST)' > $(DIST)/bundle/kustomization.yaml
	{ echo '# scaleset-operator $(VERSION): kubectl apply -f install.yaml (CRDs, namespace, RBAC, operator)'; \
	  $(KUBECTL) kustomize --load-restrictor LoadRestrictionsNone $(DIST)/bundle; } > $(DIST)/install.yaml
	rm -r $(DIST)/bundle
	$(HELM_BIN) package charts/scaleset-operator --destination $(DIST) 2>/dev/null
	cp CHANGELOG.md $(DIST)/
	@ls $(DIST)

# The chart and status tests of make unit run both.
unit: $(KSTATUS_BIN) $(HELM_BIN)

kstatus: $(KSTATUS_BIN)
	@echo $(KSTATUS_BIN)

helm: $(HELM_BIN)
	@echo $(HELM_BIN)

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
