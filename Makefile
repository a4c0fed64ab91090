# hebbkern: every set-up step from a fresh clone lives here.
#   make bench   create .venv, install pinned torch/triton, build, run the benchmark, print the table
#   make test    lint, build the wheel, install it into a fresh venv, run C++ (ctest) and Python tests
#   make wheel   build the wheel into dist/
PYTHON ?= python3
VENV ?= .venv
TEST_VENV ?= .venv-test
JOBS ?= 2
BENCH_ARGS ?=
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_PREFIX = $$($(PY) -c 'import torch; print(torch.utils.cmake_prefix_path)')
CUDA_ROOT ?= $(firstword $(wildcard /usr/local/cuda) /usr/local)

.PHONY: venv dev wheel test test-python test-cpp lint format bench clean

venv: $(VENV)/.installed
$(VENV)/.installed: requirements/dev.txt requirements/test.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -r requirements/dev.txt
	touch $@

# Editable build into .venv (the extension lands next to the sources), used by `make bench`.
dev: venv
	MAX_JOBS=$(JOBS) $(PIP) install --no-build-isolation --no-deps -e .

wheel: venv
	rm -rf dist
	MAX_JOBS=$(JOBS) $(PIP) wheel --no-build-isolation --no-deps -w dist .

lint: venv
	$(VENV)/bin/ruff check hebbkern tests benchmarks setup.py
	$(VENV)/bin/ruff format --check hebbkern tests benchmarks setup.py
	$(VENV)/bin/clang-format --dry-run --Werror $$(find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh')

format: venv
	$(VENV)/bin/ruff format hebbkern tests benchmarks setup.py
	$(VENV)/bin/ruff check --fix hebbkern tests benchmarks setup.py
	$(VENV)/bin/clang-format -i $$(find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh')

# The C++ library for libtorch users and the C++ unit tests of the rule math.
test-cpp: venv
	mkdir -p build
	TORCH_CUDA_ARCH_LIST="8.0;9.0" cmake -S . -B build/cmake -DCUDA_TOOLKIT_ROOT_DIR=$(CUDA_ROOT) \
		-DCMAKE_PREFIX_PATH="$(TORCH_PREFIX)" > build/cmake-configure.log 2>&1 || \
		(cat build/cmake-configure.log; exit 1)
	cmake --build build/cmake -j$(JOBS)
	ctest --test-dir build/cmake --output-on-failure

# The wheel installed into a fresh virtual environment; tests import hebbkern from there, never
# from the source tree (tests/conftest.py checks this when HEBBKERN_TEST_INSTALLED=1).
test-python: wheel
	rm -rf $(TEST_VENV)
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install -r requirements/test.txt dist/hebbkern-*.whl
	HEBBKERN_TEST_INSTALLED=1 $(TEST_VENV)/bin/pytest tests -q -p no:cacheprovider

test: lint test-cpp test-python

bench: dev
	$(PY) -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf build dist *.egg-info hebbkern/_C*.so $(TEST_VENV)
