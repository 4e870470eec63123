# wardled developer tasks.
#
#   make venv    .venv with wardled (editable) and the test tools
#   make run     certificates + twistd -n wardled on 127.0.0.1:8443, embedded store
#                (no etcd), then ready-to-paste curl/httpie/kubectl commands
#   make run-etcd the same on a local etcd
#   make test    lint, then the whole test suite (installs etcd with apt-get if missing)
#   make lint    ruff + mypy
#   make fuzz    the fuzz tests (tests/fuzz) with FUZZ_EXAMPLES examples each, random
#   make bench   benchmark suite against raw etcd (~10 minutes; not in make test)
#   make soak    10 minutes of mixed traffic with an etcd restart, then checks
#   make clean   build output, caches and .venv; make distclean also stops the
#                development etcd and removes .dev/

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV := .dev
CERTS := $(DEV)/certs
PORT ?= 8443
ETCD_URL := http://127.0.0.1:2379
LINT_PATHS := wardled tests twisted/plugins bench
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

export DEBIAN_FRONTEND := noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv run run-etcd test lint fuzz bench soak clean distclean etcd-installed etcd-dev etcd-stop certs

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	@# Write twisted/plugins/dropin.cache now, as the installing user, so
	@# twistd never tries (and fails) to write it later.
	$(PY) -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $@

etcd-installed:
	@command -v etcd >/dev/null 2>&1 || { \
	  echo "etcd not found: installing Debian's etcd-server and etcd-client"; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) apt-get install -y -q etcd-server etcd-client; \
	}

# A development etcd on 127.0.0.1:2379 (data in .dev/etcd, log in
# .dev/etcd.log), started in its own session so it outlives `make run`;
# reused when one is already healthy there.  `make etcd-stop` ends it.
etcd-dev: etcd-installed
	@mkdir -p $(DEV)
	@if curl -fsS $(ETCD_URL)/health 2>/dev/null | grep -q '"health":"true"'; then \
	  echo "etcd already healthy at $(ETCD_URL)"; \
	else \
	  echo "starting etcd at $(ETCD_URL) (data $(DEV)/etcd, log $(DEV)/etcd.log)"; \
	  setsid etcd --name wardled-dev --data-dir $(DEV)/etcd \
	    --listen-client-urls $(ETCD_URL) --advertise-client-urls $(ETCD_URL) \
	    --listen-peer-urls http://127.0.0.1:2380 \
	    --initial-advertise-peer-urls http://127.0.0.1:2380 \
	    --initial-cluster wardled-dev=http://127.0.0.1:2380 \
	    --logger=zap --log-outputs=stderr --log-level=warn \
	    --experimental-watch-progress-notify-interval=5s \
	    </dev/null >>$(DEV)/etcd.log 2>&1 & echo $$! >$(DEV)/etcd.pid; \
	  for i in $$(seq 1 100); do \
	    curl -fsS $(ETCD_URL)/health 2>/dev/null | grep -q '"health":"true"' && break; \
	    kill -0 $$(cat $(DEV)/etcd.pid) 2>/dev/null || { tail -20 $(DEV)/etcd.log; exit 1; }; \
	    sleep 0.1; \
	  done; \
	  curl -fsS $(ETCD_URL)/health >/dev/null || { tail -20 $(DEV)/etcd.log; exit 1; }; \
	fi

etcd-stop:
	@if [ -f $(DEV)/etcd.pid ] && kill -0 $$(cat $(DEV)/etcd.pid) 2>/dev/null; then \
	  kill $$(cat $(DEV)/etcd.pid) && echo "stopped etcd $$(cat $(DEV)/etcd.pid)"; \
	fi; rm -f $(DEV)/etcd.pid

certs: $(CERTS)/kubeconfig

$(CERTS)/kubeconfig: | $(STAMP)
	$(VENV)/bin/wardled-certs init $(CERTS) --server https://127.0.0.1:$(PORT)

# Certificates in .dev/certs (made if absent), data in .dev/data.
run: venv
	exec $(PY) -m wardled.devserver --dir $(DEV) --port $(PORT)

run-etcd: venv etcd-dev
	exec $(PY) -m wardled.devserver --dir $(DEV) --port $(PORT) -- --etcd-servers $(ETCD_URL)

test: venv etcd-installed lint
	$(PY) -m pytest -q

# Fuzzing (tests/fuzz, also run by make test with FUZZ_EXAMPLES=8,
# derandomized): here FUZZ_EXAMPLES examples per property and per OpenAPI
# operation, random; failures are kept in .hypothesis/ and replayed first
# by the next run.  FUZZ_EXAMPLES=1000 make fuzz for a longer hunt.
FUZZ_EXAMPLES ?= 200

fuzz: venv etcd-installed
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_RANDOM=1 $(PY) -m pytest -q tests/fuzz

# The benchmark suite (not part of make test): it starts and stops its own
# etcd and wardleds and measures CRUD, lists and watch fan-out against raw
# etcd in one run (about 10 minutes); table on stdout, every figure in
# .dev/bench.json, plots in .dev/bench/ (matplotlib: the bench extra).
# BENCH_ARGS="--quick" for a shorter run; --help for more.  The watch
# fan-out alone: $(PY) -m bench.watch_fanout.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]' --config-settings editable_mode=compat
	touch $@

bench: $(BENCH_STAMP) etcd-installed
	@mkdir -p $(DEV)
	$(PY) -m bench.suite --json $(DEV)/bench.json --plots $(DEV)/bench $(BENCH_ARGS)

# Soak (not part of make test): its own etcd and wardled, 10 minutes of
# creates, updates, deletes, lists and 200 watchers, etcd restarted half-way;
# PASS/FAIL lines on stdout, every figure in .dev/soak.json.
# SOAK_ARGS="--duration 300" for a shorter run; --help for more.
soak: venv etcd-installed
	@mkdir -p $(DEV)
	$(PY) -m bench.soak --json $(DEV)/soak.json $(SOAK_ARGS)

lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy $(LINT_PATHS)

clean:
	rm -rf build dist *.egg-info $(VENV) .pytest_cache .mypy_cache .ruff_cache
	rm -f twisted/plugins/dropin.cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: etcd-stop clean
	rm -rf $(DEV) apiserver.local.config
