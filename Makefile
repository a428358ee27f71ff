# ketasim: two commands on a fresh machine
#   make demo   create .venv, install, simulate examples/single_infusion.toml, write results/demo/
#   make test   create .venv with test extras and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# processes for `make test` (CI has 2 cores)
TEST_WORKERS ?= 2

.PHONY: demo test test-slow docs clean

$(STAMP): pyproject.toml requirements-lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -c requirements-lock.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ketasim simulate examples/single_infusion.toml --out results/demo
	@echo "report: results/demo/report.html"

test: $(STAMP)
	@# the browser test drives Debian's chromium; without it (or without root) that test skips with the reason,
	@# except under CI=true, where a missing browser or test dependency fails the run
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) || true
	@# TEST_WORKERS processes (pytest-xdist), each test file on one of them so that its module fixtures
	@# are computed once; the schemathesis fuzz file runs apart, since its generated cases share one
	@# test id, which pytest-xdist would collapse into one case; both run, and either failing fails the target
	status=0; \
	$(BIN)/python -m pytest -m "not slow" -q -n $(TEST_WORKERS) --dist loadfile --ignore=tests/test_web_fuzz.py || status=$$?; \
	$(BIN)/python -m pytest -m "not slow" -q tests/test_web_fuzz.py || status=$$?; \
	exit $$status

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

docs: $(STAMP)
	$(BIN)/python scripts/generate_parameter_tables.py

clean:
	rm -rf $(VENV) results .pytest_cache
