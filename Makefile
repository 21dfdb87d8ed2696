# sideman: `make run` sets up and starts the daemon; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := jackd2 fluidsynth fluid-soundfont-gm libportaudio2 gcc
KERNEL := engine/model/native/libsideman_decode.so
TORCH_VERSION := 2.13.0

.PHONY: run test test-stress setup system-deps bench clean help

help:
	@echo "make run    set up, then start the sideman daemon (default preset and model)"
	@echo "make test   set up, then run the test suite"
	@echo "make test-stress  the JACK and daemon tests with a busy process on each core"
	@echo "make bench  run the decode and live benchmarks"

setup: system-deps $(STAMP) $(KERNEL)

# Debian packages: installed when running as root and missing, else a message saying what to install.
system-deps:
	@bash scripts/system_deps.sh $(DEBIAN_PACKAGES)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: a CPU wheel; an unpinned install would pull gigabytes of CUDA packages
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# the native decode kernel: plain C, built for this machine's CPU (without a compiler the runtime
# falls back to the slower TorchScript decode step and says so)
$(KERNEL): engine/model/native/decode.c engine/model/native/build.py $(STAMP)
	$(PY) -m engine.model.native.build

run: setup
	bash scripts/run.sh $(ARGS)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# the JACK and daemon tests beside one busy process per core (started and stopped by the script)
test-stress: setup
	PY=$(PY) bash scripts/stress.sh $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/sideman bench decode
	$(VENV)/bin/sideman bench live

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis $(KERNEL)
