# Two entry points (see README): `make demo` and `make test`. Both build .venv idempotently.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The browser tests (tests/test_web_browser.py) drive Debian's Chromium through Playwright.
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test check lint typecheck cycles bench bench-serve venv browser clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch first: otherwise a dependency would pull several GB of CUDA wheels.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Chromium for the browser tests: installed with apt-get when missing (as root), else a clear failure.
# OMNISEG_SKIP_BROWSER=1 skips the browser tests and this step on purpose.
browser:
	@if [ "$$OMNISEG_SKIP_BROWSER" = 1 ] || [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium (apt-get) for the browser tests"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
			|| { echo "make: apt-get could not install chromium, which the browser tests need" >&2; exit 1; }; \
	else \
		echo "make: the browser tests need Chromium at $(CHROMIUM): apt-get install chromium (as root)," \
			"or set CHROMIUM=/path/to/chromium, or OMNISEG_SKIP_BROWSER=1 to skip them" >&2; exit 1; \
	fi; \
	[ -x "$(CHROMIUM)" ] || { echo "make: chromium is still missing at $(CHROMIUM)" >&2; exit 1; }

demo: $(STAMP)
	$(PY) -m omniseg.demo --out out/demo

# What CI runs (.ci/run): the house checks first (lint, types, import cycles), then the tests.
test: $(STAMP) browser check
	OMNISEG_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q

check: lint typecheck cycles

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts

typecheck: $(STAMP)
	$(VENV)/bin/mypy src/omniseg

cycles: $(STAMP)
	$(PY) scripts/check_import_cycles.py

bench: $(STAMP)
	$(PY) benchmarks/bench_segment.py

bench-serve: $(STAMP)
	$(PY) benchmarks/bench_serve.py

clean:
	rm -rf $(VENV) out .pytest_cache
