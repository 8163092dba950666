# Pulsing — two commands on a fresh machine: `make demo` and `make test`.
# Both install what is missing (Debian packages, a project-local .venv, the package) and are
# quick when nothing changed.

SHELL      := /bin/bash
PY         ?= python3
VENV       := .venv
VPY        := $(VENV)/bin/python
JOBS       ?= $(shell nproc)
APT_PKGS   := build-essential cmake pkg-config libuv1-dev libnghttp2-dev libssl-dev \
              libmsgpack-dev libcjson-dev libcmocka-dev
C_SOURCES  := $(shell find src include -name '*.[ch]' 2>/dev/null) CMakeLists.txt pyproject.toml

.PHONY: all demo test test-c test-c-plain test-c-asan test-py test-py-asan bench bench-compare \
        deps venv install clean

all: install

# ---- set-up ---------------------------------------------------------------------------------
deps: .deps.stamp
.deps.stamp: Makefile
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | \
	    grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages: $$missing"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@touch $@

venv: $(VENV)/.stamp
# rich: optional for users (the CLI's tables fall back to plain text), installed here so that
# tests/python/test_cli.py covers both paths.
$(VENV)/.stamp: pyproject.toml Makefile | .deps.stamp
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "scikit-build-core>=0.9" cmake ninja \
	    "pytest>=8" "pytest-asyncio>=0.23" "pytest-timeout>=2.3" "hypothesis>=6" numpy ruff rich
	@touch $@

install: $(VENV)/.installed
$(VENV)/.installed: $(VENV)/.stamp $(C_SOURCES)
	$(VPY) -m pip install -q --no-build-isolation --no-deps -e .
	@touch $@

# ---- demo ---------------------------------------------------------------------------------
demo: install
	$(VPY) examples/demo.py
	$(VPY) examples/cluster_demo.py

# ---- tests --------------------------------------------------------------------------------
test: test-c test-py test-py-asan

build/plain/.configured: CMakeLists.txt | .deps.stamp
	cmake -S . -B build/plain -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@touch $@
build/asan/.configured: CMakeLists.txt | .deps.stamp
	cmake -S . -B build/asan -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Debug \
	    -DPULSING_SANITIZE=ON >/dev/null
	@touch $@

test-c-plain: build/plain/.configured
	cmake --build build/plain -j $(JOBS)
	cd build/plain && ctest --output-on-failure -j $(JOBS)

test-c-asan: build/asan/.configured
	cmake --build build/asan -j $(JOBS)
	cd build/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

test-c: test-c-plain test-c-asan

test-py: install
	$(VPY) -m pytest -q -p no:cacheprovider tests/python

# The extension's C code (src/python/*.c) under ASan+UBSan: a second, sanitized build of _core in
# build/py-asan (Debug, so asserts are on), loaded in front of the editable one by
# tests/asan/sitecustomize.py, and the whole Python suite run against it. The interpreter is not
# instrumented, so the ASan runtime the module links is preloaded; PYTHONMALLOC=malloc lets ASan
# see Python objects too (pymalloc arenas would hide a use-after-free of a PyObject). Leak checking
# is off: CPython does not free everything at exit, so leaks are left to the C tests
# (test-c-asan, pul_mem_live). Subprocesses inherit the environment and load the same module.
# The full suite takes about 10 s this way on the 2-vCPU machine, so no subset is needed.
build/py-asan/.configured: CMakeLists.txt $(VENV)/.stamp | .deps.stamp
	cmake -S . -B build/py-asan -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Debug \
	    -DPULSING_SANITIZE=ON -DPULSING_BUILD_PYTHON=ON \
	    -DPython_EXECUTABLE=$(abspath $(VPY)) >/dev/null
	@touch $@

test-py-asan: install build/py-asan/.configured
	cmake --build build/py-asan -j $(JOBS) --target _core
	@so=$$($(VPY) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"); \
	so=$(abspath build/py-asan)/_core$$so; \
	asan=$$(ldd $$so | awk '/libasan/ {print $$3}'); \
	test -n "$$asan" || { echo "$$so does not link libasan"; exit 1; }; \
	export PYTHONPATH=$(abspath tests/asan) PULSING_CORE_SO=$$so LD_PRELOAD=$$asan \
	    PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1; \
	$(VPY) -c "import sys, pulsing._core as c; print('pulsing._core:', c.__file__); \
	    sys.exit(c.__file__ != '$$so')" && \
	$(VPY) -m pytest -q -p no:cacheprovider tests/python

# ---- benchmarks (figures, not pass/fail) ----------------------------------------------------
bench: install build/plain/.configured
	cmake --build build/plain -j $(JOBS)
	$(VPY) bench/run.py --all

# Side by side with the original Pulsing 0.1.2 and Ray 2.60.0 (docs/design/bench-compare.md).
# run.py installs the peers itself into bench/.peers/ (once); matplotlib draws the charts and is
# installed here, not for `make test`. Takes a long while on 2 cores: RUNS=1 for a first look.
RUNS ?= 5
bench-compare: install $(VENV)/.matplotlib
	$(VPY) bench/compare/run.py --runs $(RUNS)

$(VENV)/.matplotlib: $(VENV)/.stamp
	$(VPY) -m pip install -q matplotlib
	@touch $@

clean:
	rm -rf build .deps.stamp $(VENV)/.installed
