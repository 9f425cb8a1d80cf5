# Two commands: `make run` serves Bindery on http://127.0.0.1:8585, `make test` runs the suite.
# Both set up what they need (virtualenv, container engine, test images) and are quick when
# everything is already there.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test venv engine test-setup image lint bench clean

# uv installs the pinned requirements in about 10 s where pip takes about 40 (the same packages),
# compiled to bytecode at install as pip does (where PYTHONDONTWRITEBYTECODE is set, nothing else would);
# pip does it when uv cannot be had.
UV_VERSION := 0.9.5
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	{ $(PY) -m pip install --quiet uv==$(UV_VERSION) && \
	  env -u PYTHONDONTWRITEBYTECODE $(PY) -m uv pip install --quiet --compile-bytecode --python $(PY) \
	    -r requirements-dev.txt; } || \
	  $(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(STAMP)

# `make run`: embedded Redis, build + launch workers, beat, gunicorn and Flower. Ctrl-C stops all,
# and the engine service too when scripts/engine.sh started it for this run (by its pid, which the
# runner checks is still that process); an engine that was already running is left running.
run: $(STAMP)
	@scripts/proxy.sh
	@set -e; started=$$(mktemp); engine=$$(scripts/engine.sh --started-pid-file "$$started"); \
	  export "$$engine"; echo "bindery: engine $$engine"; pid=$$(cat "$$started" 2>/dev/null || true); rm -f "$$started"; \
	  exec $(PY) -m app.runner $${pid:+--engine-pid "$$pid"}

# `make image REGISTRY=registry.example.org/bindery [TAG=v1] [BASE=...]`: the image the Helm chart runs,
# built from the Dockerfile with the local engine, smoke-tested and pushed (scripts/image.sh; TAG
# defaults to the commit). It prints the helm --set arguments that select it.
image:
	@scripts/image.sh "$(REGISTRY)" "$(TAG)"

# Everything the tests need: apt packages, the engine, the local base images.
test-setup: $(STAMP)
	@scripts/test-setup.sh

# The suite runs in TEST_WORKERS pytest-xdist workers (most of it waits on builds, launches and
# sockets, so more workers than the 2 cores pay off); they share the run's registry on
# TEST_REGISTRY_PORT (5055 by default), and a test that stops a registry has its own on a port after
# it by worker number, within the 5055-5062 the engine trusts (tests/stack.py).
# pytest exits 5 when it collected nothing; that is a failure here, like any non-zero exit.
TEST_WORKERS ?= 6
# Bytecode is written (where PYTHONDONTWRITEBYTECODE is set, each of the suite's hundreds of
# processes would compile the project's modules again).
test: test-setup
	@set -e; unset PYTHONDONTWRITEBYTECODE; engine=$$(scripts/engine.sh); export "$$engine"; \
	  status=0; $(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS) || status=$$?; \
	  if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$status

# `make bench`: the figures quoted in bench/README.md (loopback only; several minutes, the machine busy meanwhile).
bench: test-setup
	@set -e; engine=$$(scripts/engine.sh); export "$$engine"; \
	  $(PY) bench/streams.py --k 2000; \
	  $(PY) bench/build_dedup.py --n 200; \
	  $(PY) bench/cached_launch.py; \
	  $(PY) bench/real_launch.py; \
	  $(PY) bench/burst.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy app tasks providers

clean:
	rm -rf var .pytest_cache
