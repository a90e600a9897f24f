# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both install the system packages (scripts/setup-system.sh; ROOPIK_SKIP_SYSTEM_PACKAGES=1 skips that),
# create .venv at the repo root on first use and reuse it afterwards.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test test-levels bench serve doctor clean

UI_RUNTIME := roopik_rl_mcp/ui/runtime

$(STAMP): pyproject.toml scripts/setup-system.sh $(UI_RUNTIME)/package-lock.json
	bash scripts/setup-system.sh
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# The CPU build of torch first (an unpinned torch would pull a multi-GB CUDA build).
	$(VENV)/bin/pip install --quiet "torch==2.13.0"
	$(VENV)/bin/pip install --quiet -e ".[test]"
	# The npm packages captured UI code may import, and the build tools; used offline afterwards.
	npm ci --no-audit --no-fund --loglevel=error --prefix $(UI_RUNTIME)
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/roopik-rl-mcp demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

# The whole suite once per sandbox isolation level this machine provides (ROOPIK_SANDBOX_ISOLATION forced);
# fails if any level fails.
test-levels: $(STAMP)
	@levels=$$($(VENV)/bin/python -c 'import sys; from roopik_rl_mcp.sandbox.isolation import levels_here; \
	  here = levels_here(); [print(f"not here: {k}: {v}", file=sys.stderr) for k, v in here.items() if v]; \
	  print(*[k for k, v in here.items() if not v])') || exit 1; \
	echo "isolation levels here: $$levels"; failed=""; \
	for level in $$levels; do \
	  echo "=== ROOPIK_SANDBOX_ISOLATION=$$level"; \
	  ROOPIK_SANDBOX_ISOLATION=$$level $(VENV)/bin/python -m pytest -q || failed="$$failed $$level"; \
	done; \
	if [ -n "$$failed" ]; then echo "test-levels: failed at:$$failed"; exit 1; fi; echo "test-levels: all passed ($$levels)"

bench: $(STAMP)
	for script in benchmarks/*.py; do $(VENV)/bin/python $$script || exit 1; done

serve: $(STAMP)
	$(VENV)/bin/roopik-rl-mcp serve

doctor: $(STAMP)
	$(VENV)/bin/roopik-rl-mcp doctor

clean:
	rm -rf $(VENV) build *.egg-info
