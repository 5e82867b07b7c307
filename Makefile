# pbx_python — the two commands a new machine needs:
#   make demo   build what is missing, run the three-SOP CallService demo cluster
#   make test   build what is missing, run the unit and integration tests
#   make test-asan  the integration tests again, on an Asterisk and a module built with
#               AddressSanitizer (a second cached Asterisk build: contrib/build-asterisk.sh --asan)
# Both install what they need (apt packages as root, a venv in .venv, Asterisk 22 from Debian's
# source package, cached outside the checkout). Set ASTERISK_PREFIX to use your own Asterisk.

# Another CPython (3.11 to 3.13, or a free-threaded 3.14t): make test PYTHON=/path/to/python3.12.
# Each one gets its own venv and module build, keyed by its version and ABI flags (.venv-3.12.1
# and build-py3.12.1/), so it never reuses or overwrites the default python3's .venv and build/.
# The test helpers find the build paired with the venv running them (pbx_python/testing/module.py).
ifeq ($(origin PYTHON),undefined)
PYTHON := python3
VENV   ?= .venv
BUILD  ?= build
else
PYKEY  := $(shell $(PYTHON) -c 'import platform, sys; print(platform.python_version() + sys.abiflags)' 2>/dev/null)
ifeq ($(PYKEY),)
$(error PYTHON=$(PYTHON) does not run)
endif
VENV   ?= .venv-$(PYKEY)
BUILD  ?= build-py$(PYKEY)
endif
PY     := $(VENV)/bin/python
# The module the Python-running targets load (the helpers' default is build/, or the venv's pair).
ifneq ($(BUILD),build)
export PBX_PYTHON_MODULE := $(CURDIR)/$(BUILD)/pbx_python.so
endif
PYTEST_ARGS ?=
# What make test / integration / test-asan collect: TESTS=tests/integration/test_switch.py runs one file.
TESTS ?= tests
# make demo DEMO_ARGS="--directory=file" (or postgresql; default both), --keep, --verbose
DEMO_ARGS ?=
# Debian packages make deps installs (as root). The voice prompts (en, fr) are the ones the test
# instances and the demo play: pbx_python/testing/instance.py links their sounds dir to
# /usr/share/asterisk/sounds. Changing this list re-runs the check (the stamp depends on the Makefile).
APT_PACKAGES := sip-tester python3-dev python3-venv build-essential \
                asterisk-core-sounds-en-gsm asterisk-core-sounds-fr-gsm
# The PostgreSQL cluster directory: the server for the tests' private PostgreSQL
# (pbx_python/testing/postgres.py) and libpq, which psycopg 3 (pure Python) loads.
APT_PACKAGES += postgresql libpq5
# Installed into the venv that Asterisk embeds; psycopg >= 3.2 for notifies(timeout=).
PIP_PACKAGES := cffi setuptools wheel pytest hypothesis psycopg>=3.2
# .deps-ok holds this list: when the list changes, deps runs again.
DEPS_LIST := pip: $(PIP_PACKAGES)
ifneq ($(file < $(VENV)/.deps-ok),$(DEPS_LIST))
.PHONY: $(VENV)/.deps-ok
endif

# The sanitizer build of the module: its own output dir, linked against the ASan Asterisk's headers.
ASAN_BUILD  := $(if $(filter build,$(BUILD)),build-asan,$(BUILD)-asan)
ASAN_CFLAGS ?= -fsanitize=address -fno-omit-frame-pointer -O1 -g
ASAN_PREFIX_CMD := bash contrib/build-asterisk.sh --asan | tail -1

.PHONY: all deps asterisk module install test unit integration demo bench clean \
        asterisk-asan module-asan test-asan

all: module

deps: $(VENV)/.deps-ok

# Installing postgresql here creates no default server (createcluster.d: create_main_cluster =
# false): the tests start private ones and nothing should listen on 5432 behind the user's back.
# The apt check has its own stamp, remade when the Makefile (APT_PACKAGES) changes; it is an
# order-only prerequisite of .deps-ok, so a new package does not rebuild the venv or the module.
$(VENV)/.apt-ok: Makefile
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    case " $$missing " in *" postgresql "*) \
	      mkdir -p /etc/postgresql-common/createcluster.d; \
	      echo "create_main_cluster = false  # pbx_python: its tests start their own server" \
	        > /etc/postgresql-common/createcluster.d/pbx-python.conf;; esac; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing Debian packages (install as root):$$missing"; exit 1; fi; fi
	@mkdir -p $(VENV) && touch $@

$(VENV)/.deps-ok: setup.py pyproject.toml | $(VENV)/.apt-ok
	$(PYTHON) -c 'import sysconfig,sys; sys.exit(0 if sysconfig.get_config_var("Py_ENABLE_SHARED") else "$(PYTHON) has no shared libpython: use another python3 (PYTHON=/usr/bin/python3)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(foreach p,$(PIP_PACKAGES),'$(p)')
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation -e .
	$(PY) -c 'import psycopg; psycopg.pq.version()' || { echo "psycopg cannot load libpq (apt install libpq5)"; exit 1; }
	printf '%s\n' '$(DEPS_LIST)' > $@

asterisk:
	bash contrib/build-asterisk.sh

$(BUILD)/pbx_python.so: $(VENV)/.deps-ok csrc/pbx_python.c csrc/gil_handoff.c csrc/build_module.py
	ASTERISK_PREFIX="$$(bash contrib/build-asterisk.sh | tail -1)" $(PY) setup.py -q build_module --build-dir $(BUILD)

module: asterisk $(BUILD)/pbx_python.so

asterisk-asan:
	bash contrib/build-asterisk.sh --asan

$(ASAN_BUILD)/pbx_python.so: $(VENV)/.deps-ok csrc/pbx_python.c csrc/gil_handoff.c csrc/build_module.py
	ASTERISK_PREFIX="$$($(ASAN_PREFIX_CMD))" PBX_PYTHON_CFLAGS="$(ASAN_CFLAGS)" \
	  PBX_PYTHON_LDFLAGS="-fsanitize=address" $(PY) setup.py -q build_module --build-dir $(ASAN_BUILD)

module-asan: asterisk-asan $(ASAN_BUILD)/pbx_python.so

# pbx-python install (pbx_python/cli.py): builds into $(BUILD), then renames it into astmoddir
# (of your ASTERISK_PREFIX, else of the cached build).
install: module
	ASTERISK_PREFIX="$$(bash contrib/build-asterisk.sh | tail -1)" $(VENV)/bin/pbx-python install --build-dir $(BUILD)

unit: deps
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

integration: module
	ASTERISK_PREFIX="$$(bash contrib/build-asterisk.sh | tail -1)" $(PY) -m pytest $(TESTS) -q -m integration $(PYTEST_ARGS)

test: module
	ASTERISK_PREFIX="$$(bash contrib/build-asterisk.sh | tail -1)" $(PY) -m pytest $(TESTS) -q -ra $(PYTEST_ARGS)

# Integration tests only (unit tests run no Asterisk). ASAN_OPTIONS: see pbx_python/testing/health.py
# (the helpers set them per instance, with each instance's reports in <base>/log/asan.<pid>).
# test_install.py is left out: it only compiles and copies files (no Asterisk runs).
test-asan: module-asan
	ASTERISK_PREFIX="$$($(ASAN_PREFIX_CMD))" PBX_PYTHON_MODULE="$(CURDIR)/$(ASAN_BUILD)/pbx_python.so" \
	  $(PY) -m pytest $(TESTS) -q -ra -m integration --ignore=tests/integration/test_install.py $(PYTEST_ARGS)

demo: module
	ASTERISK_PREFIX="$$(bash contrib/build-asterisk.sh | tail -1)" $(PY) contrib/demo.py $(DEMO_ARGS)

# The benchmarks' peers: panoramisk (FastAGI server), aiohttp (the ARI application); the stamp
# depends on the Makefile so a package added here is installed in existing checkouts too.
BENCH_PIP_PACKAGES := panoramisk aiohttp
$(VENV)/.bench-deps-ok: $(VENV)/.deps-ok Makefile
	$(PY) -m pip install -q --disable-pip-version-check $(BENCH_PIP_PACKAGES)
	touch $@

bench: module $(VENV)/.bench-deps-ok
	ASTERISK_PREFIX="$$(bash contrib/build-asterisk.sh | tail -1)" $(PY) bench/run.py $(BENCH_ARGS)

# Stress and fault suite (bench/stress.py, docs/RELIABILITY.md); STRESS_ARGS=--short for the CI version.
stress: module
	ASTERISK_PREFIX="$$(bash contrib/build-asterisk.sh | tail -1)" $(PY) bench/stress.py $(STRESS_ARGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) *.egg-info
