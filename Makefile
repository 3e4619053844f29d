# Two commands do all set-up from a fresh clone (see README):
#   make demo   — install into .venv, then rank the embedded models on a bundled probe (offline)
#   make test   — install into .venv, then run the test suite (what .ci/run calls)
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision pinned to the builds this workplace serves from local disk (fast, offline).
TORCH := torch==2.14.1 torchvision==0.29.1

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test,embedded,ray]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/advisor rank builtin:digits --max-images 300

test: $(VENV)/.installed
	$(PY) -m pytest -m "not slow" -q

bench: $(VENV)/.installed
	$(PY) benchmarks/rank_speed.py

.PHONY: install demo test bench
