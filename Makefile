# Listing triage. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ROWS ?= 200000
SEED ?= 0
DATA_DIR ?= data/generated
# a review export of your own, and its data config (column roles, tiers): `make train DATA=x.parquet CONFIG=y.yaml`
DATA ?= $(DATA_DIR)/reviews.parquet
CONFIG ?=
BUNDLE ?= models/latest
PORT ?= 8000
MLFLOW_PORT ?= 5000
NOTEBOOK_PORT ?= 8888
TEST_WORKERS ?= 2
FORCE ?=
AXE_VERSION := 4.11.0
AXE_DIR := .cache/axe-core
# Rough training time on the built-in data, for the message of `make serve` (about 1 minute per 100k rows).
TRAIN_MINUTES = $(shell echo $$(( ($(ROWS) + 99999) / 100000 )))

.DEFAULT_GOAL := help
.PHONY: help install install-browser data train retrain promote shadow-report evaluate thresholds simulate serve keys notebooks test test-reliability lint format mlflow-ui bench bench-train bench-serve bench-scale bench-offline bench-dask-train bench-text bench-quality bench-tiers bench-ceiling bench-loop bench-rules bench-identify bench-rules-mining bench-review clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Build .venv from pyproject.toml (pinned dependencies)

install-browser: ## Install Debian's chromium + chromium-driver and axe-core (npm, the pinned AXE_VERSION, into .cache/axe-core) for the browser tests, where missing
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@test "$$(node -p "require('./$(AXE_DIR)/node_modules/axe-core/package.json').version" 2>/dev/null)" = "$(AXE_VERSION)" || \
	  npm install --no-audit --no-fund --silent --prefix $(AXE_DIR) axe-core@$(AXE_VERSION)

data: $(STAMP) ## Generate synthetic review history (ROWS=200000 SEED=0) into data/generated; FORCE=1 replaces data of another size
	$(BIN)/triage generate --rows $(ROWS) --seed $(SEED) --out $(DATA_DIR) $(if $(FORCE),--force)

$(DATA_DIR)/reviews.parquet:
	$(MAKE) data

train: $(STAMP) $(DATA) ## Train, calibrate, pick thresholds, export models/<version>, log to MLflow (DATA=, CONFIG= for an export of your own)
	$(BIN)/triage train --data $(DATA) --out models --seed $(SEED)$(if $(CONFIG), --config $(CONFIG))

retrain: $(STAMP) $(DATA) ## Service verdicts (export-labels) + history -> train (1/inclusion_prob weights) -> promotion gate -> registry candidate (DATA=, CONFIG= as for train)
	$(BIN)/triage retrain --data $(DATA) --out models --seed $(SEED)$(if $(CONFIG), --config $(CONFIG))

promote: $(STAMP) ## Make the registry's candidate the champion the service serves (REASON="why" required)
	@test -n "$(REASON)" || { echo 'say why: make promote REASON="gate passed on last month's verdicts"'; exit 2; }
	$(BIN)/triage promote --reason "$(REASON)"

shadow-report: $(STAMP) ## Champion vs shadow decisions logged by the service: agreement, confusion, workload difference
	$(BIN)/triage shadow-report

evaluate: $(STAMP) ## Metrics of models/latest on the generated data, with the oracle
	$(BIN)/triage evaluate --bundle $(BUNDLE) --data $(DATA_DIR)/reviews.parquet --oracle $(DATA_DIR)/oracle.parquet

thresholds: $(STAMP) ## Choose guaranteed thresholds (the data config's recall per tier, or 0.99; block precision 0.98; 95%) for models/latest
	$(BIN)/triage thresholds --bundle $(BUNDLE)

simulate: $(STAMP) ## Workload simulation of models/latest's policy at 100k listings/day
	$(BIN)/triage simulate --bundle $(BUNDLE) --daily-volume 100000

serve: $(STAMP) ## Main job: train on generated data if no model exists, then start the service (PORT=8000)
	@test -e models/latest || { \
	  echo "no model in models/latest: training one on the built-in data first (about $(TRAIN_MINUTES) minutes for ROWS=$(ROWS))"; \
	  $(MAKE) --no-print-directory train; }
	$(BIN)/triage serve --bundle models/latest --host 127.0.0.1 --port $(PORT)

keys: $(STAMP) ## Create an API key (NAME=me SCOPES=score,review,admin; read = PMs and auditors); the token is printed once
	$(BIN)/triage keys create $${NAME:-me} --scopes $${SCOPES:-score,review,admin}

notebooks: $(STAMP) ## JupyterLab on notebooks/ with the project's kernel "listing-triage" (NOTEBOOK_PORT=8888)
	$(BIN)/python -m ipykernel install --sys-prefix --name listing-triage --display-name "Python (listing triage)"
	$(BIN)/jupyter lab notebooks/ --no-browser --ip 127.0.0.1 --port $(NOTEBOOK_PORT)

test: $(STAMP) install-browser ## Run the whole test suite (unit, end-to-end, notebooks, PostgreSQL, browser, reliability) in TEST_WORKERS processes (default 2), a test file per process at a time
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

test-reliability: $(STAMP) ## Load, crash, bad-input, auth and bundle-fault checks against a real uvicorn process
	$(BIN)/pytest -m reliability -p no:cacheprovider -rA tests/reliability

lint: $(STAMP) ## ruff (lint + format check) and mypy over every package and tests/
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP) ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

mlflow-ui: $(STAMP) ## Open the MLflow UI on the embedded tracking store (MLFLOW_PORT=5000); prints the experiment's URL
	@$(BIN)/python -c "from training.registry import experiment_url; print(experiment_url('http://127.0.0.1:$(MLFLOW_PORT)'))"
	$(BIN)/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db} --host 127.0.0.1 --port $(MLFLOW_PORT)

bench: $(STAMP) ## Every benchmark side by side with its baseline -> bench/results.md and bench/results.json
	$(BIN)/python bench/run_all.py

bench-serve: $(STAMP) ## Service latency/throughput at concurrency 1 and 32, and batch items/s
	$(BIN)/python bench/bench_serve.py

bench-scale: $(STAMP) ## Single listings at concurrency 32, SQLite vs PostgreSQL, 1/2/4 workers, CPU per decision (service + database), echo ceiling, where the time goes -> bench/out/scale.md; the decision-log write alone -> bench/out/log_write.md (analysis: bench/RESULTS_SCALE.md)
	$(BIN)/python bench/bench_scale.py --report bench/out/scale.md
	$(BIN)/python bench/scale_breakdown.py --database sqlite --report bench/out/scale.md
	$(BIN)/python bench/scale_breakdown.py --database postgresql --report bench/out/scale.md
	$(BIN)/python bench/log_write.py --report bench/out/log_write.md

bench-train: $(STAMP) ## Benchmark generate+train at 100k, 300k, 1M rows (time, peak memory) -> bench/results
	$(BIN)/python bench/bench_train.py --rows 100000 300000 1000000

bench-offline: $(STAMP) ## Offline scoring of 1M rows: one process vs a pandas + LightGBM loop vs Dask local:1 and local:2 -> bench/RESULTS_OFFLINE.md
	$(BIN)/python bench/bench_offline.py --rows 1000000 --cluster local:1,local:2

bench-text: $(STAMP) ## Text vectorising (word and char n-grams) at batch sizes 1 / 12 / 48 / 4,096 against the per-document reference -> bench/RESULTS_TEXT.md
	$(BIN)/python bench/bench_text.py

bench-quality: $(STAMP) ## Model vs baseline vs a scikit-learn reference (and the oracle) on built-in and real data -> bench/results_quality.md
	$(BIN)/python bench/bench_quality.py

bench-tiers: $(STAMP) ## Tiered and single-target policies vs the reachable limit (200k rows, seeds 0-2) + 20-seed validity -> bench/results_tiers.json
	$(BIN)/python bench/bench_tiers.py

bench-ceiling: $(STAMP) ## What any model could reach: the Bayes risk given merchants' history, vs the limit (200k rows, seeds 0-2) -> bench/results_history_ceiling.json
	$(BIN)/python bench/history_ceiling.py --out bench/results_history_ceiling.json

bench-rules: $(STAMP) ## Rule backtest over 1M scored rows vs routing-only and a per-row loop; shipped rules' workload -> bench/RESULTS_RULES.md
	$(BIN)/python bench/bench_rules.py --rows 1000000

bench-loop: $(STAMP) ## The production loop (decide, audit, label only what people saw, retrain) vs fully labelled, 4 seeds -> bench/RESULTS_LOOP.md
	$(BIN)/python bench/loop.py

bench-identify: $(STAMP) ## Re-post detection recall/precision on generated re-posts, added p99 score latency, 1M-listing index build -> bench/RESULTS_IDENTIFY.md
	$(BIN)/python bench/bench_identify.py

bench-rules-mining: $(STAMP) ## Rule suggestions mined from verdicts: workload removed and certified precision on held-out rows (200k rows, seeds 101-103, SMS spam) -> bench/RESULTS_RULE_MINING.md
	$(BIN)/python bench/bench_rule_mining.py

bench-review: $(STAMP) install-browser ## Review console: claim-to-render p50/p95/p99 over 200 claims in headless Chromium vs the bare /v1/queue/next fetch -> bench/RESULTS_REVIEW.md
	$(BIN)/python bench/bench_review.py --claims 200

bench-dask-train: $(STAMP) ## Training on a local Dask cluster of 2 workers vs one process, 1M rows (time, peak memory per process, test ROC-AUC); ROWS_DASK=10000000 DASK_ONLY=1 for the large run
	$(BIN)/python bench/bench_dask_train.py --rows $${ROWS_DASK:-1000000} $(if $(DASK_ONLY),--dask-only)

clean: ## Remove generated data, bundles and tracking store (keeps .venv)
	rm -rf data/generated models/2* models/latest models/latest.txt mlflow.db mlartifacts var
