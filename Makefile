# pgjobs — `make demo` runs the main job, `make test` runs every test. Both set up what they need.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help setup system-deps node-deps controlplane helm coredns prometheus image cluster cluster-down cluster-demo manifests demo test test-unit test-integration test-e2e test-browser test-cluster lint bench bench-soak soak kind-up kind-e2e clean

help:
	@echo "make demo        start PostgreSQL, a local Kubernetes control plane, the operator and two workers;"
	@echo "                 run the five demo jobs and show their progress (KEEP=1 keeps it running)"
	@echo "make test        lint, type-check and run every test suite (unit, integration, e2e, faults, cluster)"
	@echo "make cluster-demo  the same five jobs on real pods: a single-node cluster here, the image,"
	@echo "                 helm install of the chart (KEEP=1 keeps it running)"
	@echo "make cluster     start a single-node Kubernetes (containerd + kubelet, needs root); prints KUBECONFIG"
	@echo "make cluster-down  stop it and remove everything it left on the host"
	@echo "make image       build the pgjobs image (and the dev PostgreSQL, pause and example worker images) with buildah"
	@echo "make test-unit   unit tests only (no services)"
	@echo "make controlplane  build kube-apiserver, etcd and kubectl (~10 min the first time, cached in ~/.cache/pgjobs)"
	@echo "make helm        build helm from the Go module proxy (cached)"
	@echo "make manifests   render deploy/manifests/pgjobs.yaml from the chart"
	@echo "make bench       run the benchmarks"
	@echo "make bench-soak  the soak benchmark: 2,000,000 noop jobs at 80% of one 8-slot worker (~30 min)"
	@echo "make kind-up     create a kind cluster and install pgjobs (needs Docker and kind)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(STAMP) system-deps

# PostgreSQL's server binaries (Debian's postgresql-15), PgBouncer for the pooled tests and Chromium
# for the console's browser tests, installed when we are root and they are missing.
system-deps:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v pg_config >/dev/null 2>&1 && test -x "$$(pg_config --bindir 2>/dev/null)/initdb"; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing PostgreSQL 15 server binaries (Debian package postgresql-15)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null; \
	else echo "PostgreSQL server binaries are missing: install postgresql-15 (or set PGJOBS_PG_BINDIR)" >&2; exit 1; fi
	@if command -v pgbouncer >/dev/null 2>&1 || test -x /usr/sbin/pgbouncer; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing PgBouncer (Debian package pgbouncer) for the pooled tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; \
	else echo "PgBouncer is missing: install Debian's pgbouncer (the pooled tests need it)" >&2; exit 1; fi
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Chromium (Debian packages chromium, chromium-driver) for the console's browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "Chromium is missing: install Debian's chromium and chromium-driver (tests/browser need them)" >&2; exit 1; fi

# The node's runtime (containerd, runc, CNI plugins, iptables) and image tools, from Debian.
NODE_PACKAGES := containerd runc containernetworking-plugins iptables conntrack kmod buildah mmdebstrap
node-deps:
	@missing=""; for p in $(NODE_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing$$missing (Debian packages)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "as root, install the Debian packages:$$missing" >&2; exit 1; fi

controlplane:
	tools/controlplane/build.sh

coredns:
	tools/coredns/build.sh

prometheus:
	tools/prometheus/build.sh

image: node-deps
	deploy/image/build.sh

# The cluster's processes outlive make; `make cluster-down` stops them.
cluster: setup node-deps controlplane coredns image
	$(PY) -m pgjobs.devenv.cluster up --coredns "$$(tools/coredns/build.sh --bin)" \
		$$(deploy/image/build.sh --archives | awk '$$1 !~ /-base:/ {print "--image", $$2}')

cluster-down: $(STAMP)
	$(PY) -m pgjobs.devenv.cluster down

cluster-demo: cluster helm
	$(PY) -m pgjobs.devenv.clusterdemo --helm "$$(tools/helm/build.sh --bin)" $(if $(KEEP),--keep,)

helm:
	tools/helm/build.sh

manifests: helm
	scripts/render-manifests.sh

demo: setup controlplane
	$(PY) -m pgjobs.devenv.demo $(if $(KEEP),--keep,)

lint: $(STAMP)
	$(VENV)/bin/ruff check pgjobs tests tools $(wildcard bench)
	$(VENV)/bin/mypy

# tests/cluster uses a running `make cluster`, or starts one for the session and stops it after.
test: setup controlplane helm coredns prometheus image lint
	tools/run-suites.sh $(VENV)/bin/pytest -ra $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(VENV)/bin/pytest -ra tests/unit $(PYTEST_ARGS)

test-integration: setup
	$(VENV)/bin/pytest -ra tests/integration $(PYTEST_ARGS)

test-e2e: setup controlplane helm
	$(VENV)/bin/pytest -ra tests/e2e $(PYTEST_ARGS)

# The console in a real headless Chromium (Debian's; `setup` installs it).
test-browser: setup controlplane helm
	$(VENV)/bin/pytest -ra tests/browser $(PYTEST_ARGS)

test-cluster: setup controlplane helm coredns image
	$(VENV)/bin/pytest -ra tests/cluster $(PYTEST_ARGS)

bench: setup controlplane
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m bench
	$(PY) -m bench --only throughput --durable --shared-cpus --rounds 2

# Not `make soak`, which runs the fault suite's long sizes.
bench-soak: setup
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m bench --only soak --soak-max-minutes 25

soak: setup controlplane
	PGJOBS_SOAK=1 $(VENV)/bin/pytest -ra tests/faults $(PYTEST_ARGS)

kind-up:
	scripts/kind-up.sh

kind-e2e: setup helm
	PGJOBS_KIND=1 $(VENV)/bin/pytest -ra tests/kind $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
