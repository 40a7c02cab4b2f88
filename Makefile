# Mimamori — every step of the analysis, with real file dependencies:
# a second `make all` with nothing changed does no work; a changed config file redoes only
# the stages that read it. Each stage writes to a temporary name and renames at the end.
#   make all            the whole chain on the synthetic city, reports into reports/
#   make test           the test suite (sets itself up first)
#   make PROFILE=tiny all   the same on the 1,000-child tiny city
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.mimamori-installed
PROFILE ?=
DATA ?= data
REPORTS ?= reports
# the settings folder: config/ (a municipality may keep its own elsewhere: CONFIG=/path)
CONFIG ?= config
SIZES ?= S,M
# Steps run side by side, two at a time by default (the two targets' models fit together; the
# reports of earlier stages render meanwhile), so their progress lines interleave. At
# prefecture size (bench size L) on a 16 GB PC run one step at a time, so that no two large
# steps share the memory: `make JOBS=1 all` (with 24 GB: MODELS_ONE_AT_A_TIME=1, below).
JOBS ?= 2
MAKEFLAGS += --jobs=$(JOBS)
# where stages run: empty = config/run.yaml engine (local); ENGINE=dask = a dask LocalCluster
ENGINE ?=
export MIMAMORI_CONFIG := $(abspath $(CONFIG))
export MIMAMORI_PROFILE := $(PROFILE)
export MIMAMORI_DATA := $(abspath $(DATA))
export MIMAMORI_REPORTS := $(abspath $(REPORTS))
export MIMAMORI_ENGINE := $(ENGINE)
export MPLBACKEND := Agg
# LightGBM threads spin-wait by default, which starves the other core on a 2-core machine
export OMP_WAIT_POLICY := PASSIVE

SCHEMAS := $(wildcard data_schema/*.yaml)
PROFILE_FILE := $(if $(PROFILE),$(CONFIG)/profiles/$(PROFILE).yaml)
# shared modules (settings, paths, io, schema, exports, ...) sit at the top of the package;
# each stage is one subpackage, so a stage depends on its folder and the shared modules
CORE := $(wildcard src/helpers/*.py) $(PROFILE_FILE)
PKG = $(wildcard src/helpers/$(1)/*.py)
# The outcomes analysed come from config/run.yaml (`targets:`, or the profile's): make writes
# them to build/targets-<profile>.mk (after setting up, so a fresh clone works) and re-reads.
TARGETS_MK := build/targets-$(or $(PROFILE),default)$(if $(filter-out config,$(CONFIG)),-$(subst /,_,$(abspath $(CONFIG)))).mk
ifeq ($(filter help clean distclean,$(MAKECMDGOALS)),)
-include $(TARGETS_MK)
endif
NOTEBOOKS := $(wildcard notebooks/*.py)

RAW := $(DATA)/raw/.complete
MART := $(DATA)/mart/_ingest_report.json
PANEL := $(DATA)/panel/panel.parquet
MODELS := $(foreach t,$(TARGETS),$(DATA)/models/$(t)/metrics.json)
# MODELS_ONE_AT_A_TIME=1: under make -j the models stage still fits one target at a time (at a
# prefecture-size city each fit may need most of the memory): every target's fit waits for the
# one listed before it. Off by default: on the default city the two fits share the two cores.
MODELS_ONE_AT_A_TIME ?=
model_chain = $(if $(word 2,$(1)),$(eval $(DATA)/models/$(word 2,$(1))/metrics.json: | $(DATA)/models/$(firstword $(1))/metrics.json)$(call model_chain,$(wordlist 2,$(words $(1)),$(1))))
$(if $(MODELS_ONE_AT_A_TIME),$(call model_chain,$(TARGETS)))
REVIEW := $(DATA)/review/.complete

REPORT_00 := $(REPORTS)/00_city_overview.html
REPORT_01 := $(REPORTS)/01_data_quality.html
REPORT_02 := $(REPORTS)/02_panel.html
REPORT_03 := $(foreach t,$(TARGETS),$(REPORTS)/03_model_$(t).html)
REPORT_04 := $(REPORTS)/04_review_list.html
REPORT_05 := $(REPORTS)/05_review_results.html
REPORT_06 := $(REPORTS)/06_annual_statistics.html
REPORT_HTML := $(REPORT_00) $(REPORT_01) $(REPORT_02) $(REPORT_03) $(REPORT_04) $(REPORT_05) $(REPORT_06)
# a report reads helpers of several stages: any package change may change what it shows
REPORT_DEPS := $(wildcard src/helpers/*.py src/helpers/*/*.py) $(CONFIG)/reports.yaml $(CONFIG)/run.yaml

$(TARGETS_MK): $(SETUP_STAMP) $(CONFIG)/run.yaml $(PROFILE_FILE)
	@mkdir -p $(dir $@)
	@$(PY) -m helpers targets --make > $@.tmp && mv $@.tmp $@

.PHONY: help setup data mart panel models review reports all test test-fast lint format check-reports bench compare lab clean distclean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: $(SETUP_STAMP) ## build .venv with pinned packages and register the project's Jupyter kernel

$(SETUP_STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name mimamori --display-name "Mimamori (.venv)" >/dev/null
	@touch $@

data: $(RAW) ## generate the synthetic municipality's exports into data/raw (or check real ones)
$(RAW): $(SETUP_STAMP) $(call PKG,synth) $(CONFIG)/run.yaml $(CONFIG)/synth.yaml $(CONFIG)/ingest.yaml $(SCHEMAS) $(CORE)
	$(PY) -m helpers synth

mart: $(MART) ## ingest, validate and mask data/raw into data/mart
# The exports manifest (names, sizes and hashes of data/raw's exports) is refreshed whenever
# make looks at the mart and rewritten only when the exports changed, so an added, removed,
# changed or back-dated export redoes ingest (modification times alone miss the last two).
.SECONDEXPANSION:
EXPORTS_MANIFEST = $(shell test -x $(PY) && $(PY) -m helpers.exports $(abspath $(DATA)))
$(MART): $(RAW) $$(EXPORTS_MANIFEST) $(call PKG,ingest) $(CONFIG)/ingest.yaml $(CONFIG)/run.yaml $(SCHEMAS) $(CORE)
	$(PY) -m helpers ingest

panel: $(PANEL) ## build the child x fiscal-year panel and feature catalogue
$(PANEL): $(MART) $(call PKG,panel) $(CONFIG)/panel.yaml $(CONFIG)/run.yaml $(CORE)
	$(PY) -m helpers panel

models: $(MODELS) ## fit baselines and models for every target
$(DATA)/models/%/metrics.json: $(PANEL) $(call PKG,models) $(CONFIG)/models.yaml $(CONFIG)/run.yaml $(CORE)
	$(PY) -m helpers models --target $*

review: $(REVIEW) ## draw the review list and blinded sample, simulate verdicts on synthetic data
# On the synthetic city simulated reviewers answer at once; on real data the sheets go to the
# schools and `python -m helpers review verdicts` reads them when they come back.
IS_SYNTHETIC = $(PY) -c "import sys; from helpers.config import load_config; sys.exit(0 if load_config()['run']['synthetic'] else 1)"
$(REVIEW): $(MODELS) $(call PKG,review) $(CONFIG)/review.yaml $(CONFIG)/run.yaml $(CORE)
	$(PY) -m helpers review draw
	if $(IS_SYNTHETIC); then $(PY) -m helpers review simulate && $(PY) -m helpers review verdicts; \
	elif ls $(DATA)/review/verdicts/* >/dev/null 2>&1; then $(PY) -m helpers review verdicts; fi
	@touch $@

reports: $(REPORTS)/index.html ## render every notebook into code-free HTML under reports/

$(REPORT_00): notebooks/00_city_overview.py $(RAW) $(PANEL) $(REPORT_DEPS)
	$(PY) -m helpers reports --only 00_city_overview
$(REPORT_01): notebooks/01_data_quality.py $(MART) $(REPORT_DEPS)
	$(PY) -m helpers reports --only 01_data_quality
$(REPORT_02): notebooks/02_panel.py $(PANEL) $(REPORT_DEPS)
	$(PY) -m helpers reports --only 02_panel
$(REPORTS)/03_model_%.html: notebooks/03_model.py $(DATA)/models/%/metrics.json $(REPORT_DEPS)
	$(PY) -m helpers reports --only 03_model --target $*
$(REPORT_04): notebooks/04_review_list.py $(REVIEW) $(REPORT_DEPS)
	$(PY) -m helpers reports --only 04_review_list
$(REPORT_05): notebooks/05_review_results.py $(REVIEW) $(REPORT_DEPS)
	$(PY) -m helpers reports --only 05_review_results
$(REPORT_06): notebooks/06_annual_statistics.py $(MART) $(REPORT_DEPS)
	$(PY) -m helpers reports --only 06_annual_statistics

$(REPORTS)/index.html: $(REPORT_HTML)
	$(PY) -m helpers reports --index

all: $(REPORTS)/index.html ## the whole chain: data -> mart -> panel -> models -> review -> reports, then the PII scan
	$(PY) -m helpers check-reports

check-reports: $(SETUP_STAMP) ## audit every file under reports/ for names, addresses, real codes and counts 1-9 (incl. by subtraction)
	$(PY) -m helpers check-reports

test: $(SETUP_STAMP) ## run the whole test suite (unit tests, the tiny city end to end, real-data mode in both dialects)
	$(PY) -m pytest -q

test-fast: $(SETUP_STAMP) ## unit tests only (skips the tiny-city pipeline and notebooks)
	$(PY) -m pytest -q -m "not slow"

lint: $(SETUP_STAMP) ## format check, lint (ruff) and type check (mypy) of the package, tests and notebooks
	$(VENV)/bin/ruff format --check src tests notebooks
	$(VENV)/bin/ruff check src tests notebooks
	$(VENV)/bin/mypy

format: $(SETUP_STAMP) ## rewrite sources in the project's format (ruff format) and apply safe lint fixes
	$(VENV)/bin/ruff format src tests notebooks
	$(VENV)/bin/ruff check --fix src tests notebooks

compare: $(SETUP_STAMP) ## compare two archived models runs into reports/07_run_comparison.html (BASE=previous NEW=latest [TARGET=]; `python -m helpers runs list` shows ids)
	$(PY) -m helpers runs compare $(or $(BASE),previous) $(or $(NEW),latest) $(if $(TARGET),--target $(TARGET))

lab: $(SETUP_STAMP) ## JupyterLab on the project kernel, reading the data make built (same PROFILE= DATA=; LAB_ARGS= more options)
	MPLBACKEND=module://matplotlib_inline.backend_inline $(VENV)/bin/jupyter lab --notebook-dir=notebooks $(LAB_ARGS)

bench: $(SETUP_STAMP) ## benchmark every stage at city sizes SIZES=S,M,L [ENGINE=dask] into reports/bench/ (BENCH_ARGS=--write-readme updates README's table)
	$(PY) -m helpers bench --sizes $(SIZES) --engine $(or $(ENGINE),local) $(BENCH_ARGS)

clean: ## remove data/, build/ and rendered reports (keeps .venv)
	rm -rf $(DATA) build $(REPORTS)/*.html $(REPORTS)/bench

distclean: clean ## also remove .venv
	rm -rf $(VENV)
