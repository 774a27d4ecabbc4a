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

.PHONY: all setup figures test lab bench train validate clean distclean help

all: figures

help:
	@echo "make figures [PROFILE=ci|default|paper]  execute every notebook, write $(FIGURES)/"
	@echo "make test                                unit tests + every notebook on the ci profile"
	@echo "make lab                                 JupyterLab on notebooks/ (jupytext pairing)"
	@echo "make bench                               peer benchmarks (sigpy), ratios printed"
	@echo "make train [PROFILE=...]                 train the MRI and 4D-STEM priors (resumable)"
	@echo "make validate [PROFILE=...]              the profile's validation grids -> $(FIGURES)/validation_*.csv,"
	@echo "                                         and the MRI baseline weight search -> tune_baselines_*.csv"

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
	touch $@

# The README's tables are copies of the generated ones (paperlib/_readme_tables.py), refreshed last
# (only for the committed figures/ of the default profile).
figures: $(RUNS)
	@echo "figures written to $(FIGURES)/ (executed notebooks in $(BUILD)/)"
ifeq ($(PROFILE)$(FIGURES),defaultfigures)
	$(PY) -m paperlib._readme_tables
endif

# A notebook is re-executed when its source, the profile, any library code or a prior changes.
$(BUILD)/%.ipynb: notebooks/%.py notebooks/params/$(PROFILE).yaml $(PKG_SRC) $(PRIORS) | $(VENV)/.installed
	@mkdir -p $(BUILD) $(FIGURES)
	@echo "== $* ($(PROFILE))"
	@start=$$(date +%s); \
	$(PY) -m paperlib._run_notebook $< $@ profile=$(PROFILE) out_dir=$(abspath $(FIGURES)); \
	echo "   $* took $$(( $$(date +%s) - start )) s"

# pytest exits 5 when it collects no tests: that is a failure here, with a message saying so.
test: $(VENV)/.installed
	@status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$status

lab: $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[lab]"
	cd notebooks && ../$(PY) -m jupyter lab

# Train the MRI prior, then the 4D-STEM prior, of a profile (each resumes after a kill); for the
# default profile the 4D-STEM prior is then fine-tuned with the L2 loss (checkpoints/stem_default_l2,
# the one the profile uses; see the stem_default_l2 preset). THREADS=1 on shared cores.
THREADS ?= 2
train: $(VENV)/.installed
	$(PY) -m paperlib train --modality mri --profile $(PROFILE) --threads $(THREADS)
	$(PY) -m paperlib train --modality stem --profile $(PROFILE) --threads $(THREADS)
ifeq ($(PROFILE),default)
	$(PY) -m paperlib train --modality stem --profile default --preset stem_default_l2 --threads $(THREADS)
	$(PY) -m paperlib train --modality mri --profile default --preset mri_general --threads $(THREADS)
endif
# the whole-depth priors of Figure 5 and Table 3 (one network over all slices; fine-tuned from group 0
# of the prior above in the default and ci profiles, from scratch in the paper profile)
ifeq ($(PROFILE),default)
	$(PY) -m paperlib train --modality mri --profile default --preset mri_single --threads $(THREADS)
	$(PY) -m paperlib train --modality stem --profile default --preset stem_single --threads $(THREADS)
else
	$(PY) -m paperlib train --modality mri --profile $(PROFILE) --preset mri_single_$(PROFILE) --threads $(THREADS)
	$(PY) -m paperlib train --modality stem --profile $(PROFILE) --preset stem_single_$(PROFILE) --threads $(THREADS)
endif

# Tuning on the validation split (never the test split): what every tuned_on text cites.
TUNE_GRID := 0.0002 0.0005 0.001 0.002 0.005 0.01 0.02
validate: $(VENV)/.installed
	$(PY) -m paperlib tune-baselines --profile $(PROFILE) --grid $(TUNE_GRID) --wavelets haar db4 \
		--out $(FIGURES)/tune_baselines_$(PROFILE).csv --overwrite
	$(PY) -m paperlib.validation --profile $(PROFILE) --out $(FIGURES)

bench: $(VENV)/.installed | .venv-py4dstem/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[bench]"
	$(PY) benchmarks/mri_peers.py
	$(PY) benchmarks/stem_peers.py
	$(PY) benchmarks/diffusion_ranks.py

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
