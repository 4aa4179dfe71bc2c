# The two commands: `make demo` runs the whole pipeline on the embedded default; `make test` runs the tests.
# Both set everything up on a fresh machine and reuse .venv when it is current.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: demo demo-cloud test reliability lint setup dev map-page docs validate bench bench-full-tile bench-stale clean

demo: setup
	$(BIN)/geo-assets demo

# The same graph on the aws and gcp profiles, against S3 and GCS servers it starts on 127.0.0.1.
demo-cloud: setup
	$(BIN)/python -m devtools.demo_cloud

# Two workers, a test file each at a time (tests/conftest.py pins their cores): first the suite,
# then the end-to-end runs of several minutes and the container tests (markers `slow`, `containers`).
test: setup lint
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=15 -m 'not soak and not slow and not containers'
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=15 -m 'slow or containers'

# The fault suite (tests/faults/, also part of `make test`), with each scenario writing its section of
# RELIABILITY.md: the only run that changes that file.
reliability: setup
	$(BIN)/python -m tests.faults.reliability


# ruff: lint and format check (pyproject [tool.ruff]), then mypy: the types of geo_assets and resources
# (pyproject [tool.mypy]); `make test` runs it first. Fix the format with
# `.venv/bin/ruff check --fix . && .venv/bin/ruff format .`.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The Dagster UI on 3000 and, beside it, the map of the store's outputs on 3100 (geo-assets map-server),
# stopped with it. Without npm the map page says how to get Leaflet; the UI and the tiles still work.
dev: setup
	-$(BIN)/python -m devtools.leaflet
	$(BIN)/geo-assets map-server & map=$$!; trap 'kill $$map' EXIT INT TERM; $(BIN)/dagster dev -w workspace.yaml

# The map page's Leaflet, from npm (the map page's only prerequisite; `make demo` needs no npm).
map-page: setup
	$(BIN)/python -m devtools.leaflet

# README.md, docs/, deploy/README.md and BENCHMARKS.md as a site in site/ (MkDocs; links and anchors checked).
docs: setup
	$(BIN)/python -m mkdocs build --strict

validate: setup
	$(BIN)/dagster definitions validate -w workspace.yaml

bench: setup
	$(BIN)/python -m bench.predictions
	$(BIN)/python -m bench.floor
	$(BIN)/python -m bench.cog_reads
	$(BIN)/python -m bench.tile_io
	$(BIN)/python -m bench.tile_digest
	$(BIN)/python -m bench.seams
	$(BIN)/python -m bench.full_tile
	$(BIN)/python -m bench.runs
	$(BIN)/python -m bench.launch
	$(BIN)/python -m bench.image
	$(BIN)/python -m bench.stack
	$(BIN)/python -m bench.disk
	$(BIN)/python -m bench.database_away
	$(BIN)/python -m bench.service_messages
	$(BIN)/python -m bench.backfill
	$(BIN)/python -m bench.sensor_tick
	$(BIN)/python -m bench.dask_fanout
	$(BIN)/python -m bench.training_memory
	$(BIN)/python -m bench.map_tiles

bench-full-tile: setup
	$(BIN)/python -m bench.full_tile

# The BENCHMARKS.md sections whose measured code changed since the commit they record (git and the standard library only).
bench-stale:
	$(PYTHON) -m bench.stale

setup: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml

# torch first, the CPU build, from a local wheel folder (TORCH_WHEELS, pip's find-links) or else PyTorch's
# CPU wheel index (TORCH_INDEX_URL); then everything at the locked versions. The image's build runs
# the same script (deploy/install-locked.sh), with .venv/bin first on PATH here. pip is upgraded after
# torch, so a machine with no torch source is told so before anything else is downloaded.
LOCKED = PATH="$(CURDIR)/$(BIN):$$PATH" PIP_QUIET=1 sh deploy/install-locked.sh
$(VENV)/.installed: pyproject.toml deploy/constraints.txt deploy/install-locked.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(LOCKED) torch
	$(BIN)/pip install --quiet --upgrade pip
	$(LOCKED) dev
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

clean:
	rm -rf .dagster_home .demo-cloud
