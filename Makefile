# Two commands matter: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WHEELDIR ?= $(HOME)/.cache/omnimeta/wheels
# Where `make wheelhouse` writes the wheels another project installs omnimeta from.
WHEELHOUSE ?= dist/wheelhouse
SHARED_DATA := ../shared/omniglot
# Use the project's local copy of Omniglot when it sits beside the checkout;
# otherwise let `make run` fetch the canonical archives (checksummed).
ifneq ($(wildcard $(SHARED_DATA)/images_background.zip),)
export OMNIMETA_DATA := $(abspath $(SHARED_DATA))
DATA_ARGS :=
else
DATA_ARGS := --download
endif
RUN_ARGS ?=

.PHONY: install run test clean docs wheelhouse

install: $(STAMP)

# learn2learn is installed with --force-reinstall first: a .venv made before tools/build-learn2learn changed
# its wheel (the version number stays 0.2.0) gets the new one.
$(STAMP): setup.cfg pyproject.toml constraints.txt tools/build-learn2learn
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt torch torchvision
	tools/build-learn2learn $(BIN)/python $(WHEELDIR)
	$(BIN)/python -m pip install -q --no-deps --force-reinstall --find-links $(WHEELDIR) learn2learn==0.2.0
	$(BIN)/python -m pip install -q -c constraints.txt --find-links $(WHEELDIR) learn2learn==0.2.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

run: install
	$(BIN)/omnimeta run --solver fomaml $(DATA_ARGS) $(RUN_ARGS)

# Two workers; tests that install packages or share the 2-rank runs stay together (xdist_group, tests/conftest.py).
# compileall first: with PYTHONDONTWRITEBYTECODE set (as on our machines) nothing caches the bytecode of the
# checkout, and every omnimeta process the suite starts would compile the package again (0.15-0.25 s each).
test: install
	$(BIN)/python -m compileall -q l2l_omniglot tests
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=25

# omnimeta's wheel and the learn2learn 0.2.0 wheel built for .venv's Python, for
# `pip install -c constraints.txt --find-links dist/wheelhouse omnimeta` elsewhere.
wheelhouse: install
	tools/build-wheelhouse $(BIN)/python $(WHEELDIR) $(WHEELHOUSE)

clean:
	rm -rf $(VENV) build dist *.egg-info

docs: install
	$(BIN)/python tools/cli_docs.py
