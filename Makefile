# The two entry points of the README. Both create .venv and install the pinned stack first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint install bench clean browser

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,spark]'
	touch $(STAMP)

install: $(STAMP)

# End to end on synthetic data (data/demo, out/demo, mlruns/, models/: all git-ignored);
# `keyaccounts demo --workdir DIR` keeps everything, MLflow store included, inside DIR.
demo: $(STAMP)
	$(BIN)/keyaccounts demo

# The report's browser test needs Debian's chromium (we run as root; without it the test skips
# and says why).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the browser test will be skipped"

test: $(STAMP) browser lint
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools

test-fast: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/features.py

clean:
	rm -rf $(VENV) out data/demo
