# The two commands of the README: `make run` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `uv pip install` where setup could install uv (UV_NATIVE_TLS: the system's certificates, as pip's),
# else pip; decided by the shell, as make expands a whole recipe before running its first line.
INSTALL = $$(if [ -x $(BIN)/uv ]; then echo env UV_NATIVE_TLS=1 $(BIN)/uv pip install -q --python $(BIN)/python; else echo $(BIN)/python -m pip install -q; fi)
KAFKA_VERSION ?= 4.1.1
PACKAGES := -e core -e broker -e testing -e services/ingest -e services/sink -e services/drift -e services/judge \
            -e services/feedback -e services/retrain-trigger -e services/alerts -e jobs/finetune -e dashboards \
            -e cli -e stack -e sdk
PYPROJECTS := $(wildcard core/pyproject.toml broker/pyproject.toml cli/pyproject.toml testing/pyproject.toml \
              services/*/pyproject.toml stack/pyproject.toml \
              sdk/pyproject.toml dashboards/pyproject.toml jobs/finetune/pyproject.toml)

.PHONY: setup kafka checkers checkers-or-warn run test lint bench dashboards clean

setup: $(VENV)/.installed

$(VENV)/.installed: $(PYPROJECTS) requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# uv resolves the same packages as pip and fetches them in parallel: setup from nothing in about
	# half the time. Where uv cannot be had, pip does the same installs.
	$(BIN)/python -m pip install -q --upgrade pip uv || $(BIN)/python -m pip install -q --upgrade pip
	# torch first and on its own (drift, judge and the fine-tuning job need it; ingest,
	# feedback and retrain-trigger never import it). PyPI's Linux wheel is the CUDA build,
	# which also runs on CPU; set TORCH_INDEX to a CPU wheel index where one is reachable.
	@echo "installing torch$(if $(TORCH_INDEX), from $(TORCH_INDEX))"; $(INSTALL) torch $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	@echo "installing Lookout's packages (editable) and requirements-dev.txt"; $(INSTALL) --config-settings editable_mode=compat $(PACKAGES) -r requirements-dev.txt
	@touch $@

# Apache Kafka jars from Maven Central, for `lookout up` and the test fixtures (cached under .cache/).
kafka: .cache/kafka/$(KAFKA_VERSION)/.resolved

.cache/kafka/$(KAFKA_VERSION)/.resolved: broker/lookout/broker/kafka-pom.xml
	scripts/fetch-kafka.sh $(KAFKA_VERSION)

# The Go checkers the tests run (compose-go for compose.yaml, helm + kubeconform for the chart).
# A cold build of helm's modules takes minutes of both cores: `make test` builds them beside the
# package installs (network-bound) instead of inside a test. The tests rebuild a stale one the
# same way (tests/go_checkers.py).
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
checkers: .cache/go/compose-check .cache/go/helm-check

.cache/go/%: scripts/%/go.mod scripts/%/go.sum scripts/%/main.go
	@mkdir -p $(@D)
	cd scripts/$* && $(GO) build -o $(CURDIR)/$@ .

checkers-or-warn:
	@$(MAKE) --no-print-directory checkers || echo "warning: a Go checker did not build; its tests will build it again" >&2

# With Java 17+ and Maven, the jars first: `lookout up` then runs Apache Kafka (durable). Without
# them, or offline, it runs Tansu (in memory) and says so at start.
run: setup
	@if command -v java >/dev/null && command -v mvn >/dev/null; then \
	  $(MAKE) --no-print-directory kafka || echo "Apache Kafka jars not resolved: lookout up will say which broker it runs"; \
	fi
	$(BIN)/lookout up --demo

# Most tests wait on brokers, subprocesses and timers, so TEST_WORKERS processes (each with its
# own brokers and chdb path) finish in about half the time of one even on two cores. Tests marked
# `serial` assert timing under their own load (a /healthz deadline, evidence within minutes), so
# they run afterwards, alone. TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 3
TEST_ENV := LOOKOUT_KAFKA_LIBS=$(CURDIR)/.cache/kafka/$(KAFKA_VERSION)/libs

test:
	@# Setup, the Kafka jars and the Go checkers at once; a checker that does not build is built
	@# (and its error shown) again by its tests.
	$(MAKE) --no-print-directory -j3 setup kafka checkers-or-warn
	$(BIN)/ruff check .
	@rc=0; \
	$(TEST_ENV) $(BIN)/python -m pytest -m "not serial" $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist worksteal) || rc=$$?; \
	$(TEST_ENV) $(BIN)/python -m pytest -m serial || rc=$$?; \
	exit $$rc

# pyright (basic) covers what pyrightconfig.json includes: core/, sdk/ (the SDK itself as Python 3.9, its oldest),
# jobs/finetune/, broker/, stack/, dashboards/ and the services' packages.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/pyright

bench: setup kafka
	LOOKOUT_KAFKA_LIBS=$(CURDIR)/.cache/kafka/$(KAFKA_VERSION)/libs $(BIN)/python -m bench

# Regenerate the Grafana dashboard and alert provisioning (dashboards/grafana/) from lookout.dashboards.
dashboards: setup
	$(BIN)/python -m lookout.dashboards.generate

clean:
	rm -rf $(VENV) .cache .lookout
