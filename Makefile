# Set-up and the two everyday commands. `make run` and `make test` create the
# virtual environment on first use.
#
# TORCH_CONSTRAINTS pins the CPU build of torch that lies on the disk of our
# development and CI machines; elsewhere run `make TORCH_CONSTRAINTS= test` (or
# `pip install -e .[dev]`) to take whatever torch pip chooses for your platform.
PYTHON ?= python3
VENV ?= .venv
TORCH_CONSTRAINTS ?= constraints/cpu.txt
BIN := $(VENV)/bin
# pytest-xdist workers for `make test`, whole test files each (module fixtures start
# once); `make TEST_WORKERS=0 test` runs in one process.
TEST_WORKERS ?= 2
STAMP := $(VENV)/.nondiff-installed

.PHONY: venv run test docs lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(TORCH_CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(if $(TORCH_CONSTRAINTS),-c $(TORCH_CONSTRAINTS)) -e ".[dev,rl,dist,nevergrad,log,docs,automl]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/nondiff bench run --suite quick

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# The documentation site, into docs/site/ (not in git); --strict: a broken reference fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -f docs/mkdocs.yml

bench: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m nondiff.benchmarks.cmaes_overhead
	$(BIN)/python -m nondiff.benchmarks.es_speed
	$(BIN)/nondiff bench run --suite continuous
	$(BIN)/nondiff bench run --suite discrete
	OMP_NUM_THREADS=1 $(BIN)/python -m nondiff.benchmarks.discrete_search
	OMP_NUM_THREADS=1 $(BIN)/python -m nondiff.benchmarks.studies.reinforce_variance
	OMP_NUM_THREADS=1 $(BIN)/python -m nondiff.benchmarks.studies.mixed_space
	OMP_NUM_THREADS=1 $(BIN)/python -m nondiff.benchmarks.decoupled
	OMP_NUM_THREADS=1 $(BIN)/python -m nondiff.benchmarks.hybrid_tasks
	OMP_NUM_THREADS=1 $(BIN)/python -m nondiff.benchmarks.studies.admm_quantized
	OMP_NUM_THREADS=1 $(BIN)/python -m nondiff.benchmarks.studies.miqp
	OMP_NUM_THREADS=1 $(BIN)/python -m nondiff.benchmarks.studies.layerwise_admm
	OMP_NUM_THREADS=1 $(BIN)/python -m nondiff.benchmarks.studies.tune_clones
	OMP_NUM_THREADS=1 $(BIN)/python -m nondiff.benchmarks.neuroevolution
	OMP_NUM_THREADS=1 $(BIN)/python -m nondiff.benchmarks.control_speed

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache nondiff-report docs/site docs/.build
