# Stockade: `make run` sets everything up and starts the service; `make test`
# sets everything up and runs the whole suite. Both go through `make setup`,
# which installs only what is missing and is quick when nothing is.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# System packages: the sandbox (bubblewrap, libseccomp; gcc and musl-tools build
# the static stockade-launch, libc6-dev the spawner), the venv, and the tools
# the test-suite uses (iproute2 for `ip`, procps for `ps`).
DEB_CORE := bubblewrap libseccomp2 gcc musl-tools libc6-dev python3-venv python3-dev iproute2 procps
# Language toolchains for the runtime catalog (Debian packages only: /usr).
DEB_RUNTIMES := gcc g++ openjdk-17-jdk-headless nodejs rustc golang-go ruby php-cli perl lua5.4
# What only the test-suite needs: a PostgreSQL server (the service's tests on
# PostgreSQL start a throwaway cluster of their own; Debian's stays unused).
DEB_TEST := postgresql

.PHONY: setup system-packages runtimes test-packages venv launcher run test lint bench clean

setup: system-packages venv launcher

system-packages:
	@bash scripts/apt-ensure.sh $(DEB_CORE)

runtimes:
	@bash scripts/apt-ensure.sh $(DEB_RUNTIMES)

test-packages:
	@bash scripts/apt-ensure.sh $(DEB_TEST)

# The stamp depends on pyproject.toml, so the install runs only when it changed.
venv: $(VENV)/.stamp
$(VENV)/.stamp: pyproject.toml
	@test -x $(PY) || /usr/bin/python3 -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[service,test]'
	@touch $@

# The sandbox's small static helper (src/stockade/sandbox/launch.py says why),
# and the library that starts bwrap without it (spawn.py).
LAUNCHER := $(VENV)/libexec/stockade-launch
SPAWNER := $(VENV)/libexec/libstockade-spawn.so
launcher: $(LAUNCHER) $(SPAWNER)
$(LAUNCHER): src/stockade/sandbox/launch.c src/stockade/sandbox/steps.h Makefile $(VENV)/.stamp
	@mkdir -p $(@D)
	@musl-gcc -static -O2 -Wall -Wextra -Werror -o $@.new $<
	@chmod 0755 $@.new && mv -f $@.new $@
$(SPAWNER): src/stockade/sandbox/spawn.c src/stockade/sandbox/steps.h $(VENV)/.stamp
	@mkdir -p $(@D)
	@gcc -shared -fPIC -O2 -Wall -Wextra -Werror -o $@.new $<
	@chmod 0755 $@.new && mv -f $@.new $@

run: setup runtimes
	$(VENV)/bin/stockade serve

# Every runtime is installed first: a test that needs one fails rather than skips.
test: setup runtimes test-packages
	STOCKADE_REQUIRE_RUNTIMES=1 $(VENV)/bin/python -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .

bench: setup runtimes
	$(PY) bench/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .stockade
