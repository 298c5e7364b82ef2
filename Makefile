# solo-course: two commands on a fresh machine.
#   make lab    create .venv if needed, install the pinned requirements, open JupyterLab on notebooks/
#   make test   the same bootstrap plus the test tools, then unit tests, strict nbval on every notebook, and the widget
#               notebooks in JupyterLab in headless Chromium (tests/browser; skipped, saying why,
#               when /usr/bin/chromium is missing)
#   make bench  the benchmark suite (bench/): a table on stdout, figures in bench/results.json
SHELL := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Two installs, each remembered by a stamp file: what a learner needs (requirements.txt, solo_lib
# editable) and what the tests add (requirements-test.txt). The test stamp depends on the learner's, so
# a test run after `make lab`, or after requirements.txt changed, installs the test tools (again).
STAMP      := $(VENV)/.solo-course-installed
TEST_STAMP := $(VENV)/.solo-course-test-installed

# The same environment for the learner's kernel and for CI, so committed outputs match both:
# TensorFlow's C++ logging off, headless plots, and TensorFlow's oneDNN CPU kernels on. TensorFlow
# turns oneDNN on by itself only on CPUs with AVX-512 deep-learning features (VNNI, BF16, AMX);
# on an AVX2-only CPU (most laptops, AMD Zen 3 and older) it falls back to its plain kernels,
# whose convolution gradients train the tiny preset 2-3x slower. solo_lib/__init__.py sets the
# same default for anything that imports solo_lib before TensorFlow. `TF_ENABLE_ONEDNN_OPTS=0
# make test` runs the suite on the plain kernels instead. The two families round differently,
# one reason why notebooks print shapes and integers and assert on floats rather than print them.
export TF_CPP_MIN_LOG_LEVEL := 3
export TF_ENABLE_ONEDNN_OPTS ?= 1
NB_ENV := MPLBACKEND=Agg TQDM_DISABLE=1 CUDA_VISIBLE_DEVICES= PYTHONHASHSEED=0

NBVAL_FLAGS := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
# Arguments for python -m bench, e.g. make bench BENCH_ARGS="targets nms --quick"
BENCH_ARGS ?=

.PHONY: venv venv-test lab test demo demo-real unit nbval browser notebooks data bench clean help
help:
	@echo "make lab        open the course in JupyterLab (bootstraps .venv)"
	@echo "make test       unit tests + strict nbval on every notebook + browser tests (bootstraps .venv)"
	@echo "make demo       headless: train the tiny preset on the sample data, print AP, write outputs/"
	@echo "make demo-real  headless: convert, fine-tune and evaluate on three real photos (data/real_photos), write outputs/real/"
	@echo "make unit       unit tests only"
	@echo "make nbval      notebooks only"
	@echo "make browser    widget notebooks in JupyterLab in headless Chromium only (screenshots in outputs/browser/)"
	@echo "make notebooks  re-execute every notebook in place (for authors, before committing)"
	@echo "make data       regenerate data/sample_coco from scripts/make_sample_data.py"
	@echo "make bench      run the benchmarks on this machine: table + bench/results.json (BENCH_ARGS=\"nms --quick\": a subset)"

venv: $(STAMP)

venv-test: $(TEST_STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python scripts/install_kernel.py
	@touch $(STAMP)

$(TEST_STAMP): $(STAMP) requirements-test.txt
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	@touch $(TEST_STAMP)

lab: venv
	$(BIN)/jupyter lab --notebook-dir=notebooks

# ruff check: lint first (rules in pyproject.toml), so a style slip fails in seconds, not after the tests.
# -rs: a skipped test says why in the summary (e.g. the browser tests without Chromium);
# --durations=30: the slowest tests, to keep the CI budget in view.
test: venv-test
	$(BIN)/ruff check .
	$(NB_ENV) $(BIN)/python -m pytest -rs --durations=30 tests notebooks $(NBVAL_FLAGS)

demo: venv
	MPLBACKEND=Agg $(BIN)/python -m solo_lib demo --out outputs

demo-real: venv
	MPLBACKEND=Agg $(BIN)/python -m solo_lib demo --real --out outputs/real

unit: venv-test
	$(NB_ENV) $(BIN)/python -m pytest -m "not browser" tests

nbval: venv-test
	$(NB_ENV) $(BIN)/python -m pytest notebooks $(NBVAL_FLAGS)

browser: venv-test
	$(BIN)/python -m pytest -rs tests/browser

notebooks: venv
	$(NB_ENV) $(BIN)/python scripts/execute_notebooks.py $(filter-out notebooks/08_%,$(wildcard notebooks/*.ipynb))
	# 08 keeps its training progress bar in the saved output: a learner reading it on GitHub sees what
	# Jupyter shows, and the browser test checks that widget.
	$(subst TQDM_DISABLE=1 ,,$(NB_ENV)) $(BIN)/python scripts/execute_notebooks.py notebooks/08_*.ipynb

data: venv
	$(BIN)/python scripts/make_sample_data.py data/sample_coco

bench: venv-test
	$(NB_ENV) $(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
