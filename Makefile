# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv at the repo root on first use and reuse it afterwards.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test bench serve doctor clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# The CPU build of torch first (an unpinned torch would pull a multi-GB CUDA build).
	$(VENV)/bin/pip install --quiet "torch==2.13.0"
	$(VENV)/bin/pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/roopik-rl-mcp demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	for script in benchmarks/*.py; do $(VENV)/bin/python $$script || exit 1; done

serve: $(STAMP)
	$(VENV)/bin/roopik-rl-mcp serve

doctor: $(STAMP)
	$(VENV)/bin/roopik-rl-mcp doctor

clean:
	rm -rf $(VENV) build *.egg-info
