# `make run` and `make test` do all set-up on a machine with only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install install-dev plugins clean

run: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py bootstrap
	$(BIN)/python manage.py serve

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# pip prints one line per package (not --quiet): the first install takes about a minute, and a
# silent minute looks like a hang.
PIP := $(BIN)/python -m pip install --disable-pip-version-check --progress-bar off

$(VENV)/bin/python:
	@echo "==> creating the virtualenv $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	@echo "==> installing requirements.txt into $(VENV) (about a minute the first time)"
	$(PIP) -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	@echo "==> installing requirements-dev.txt into $(VENV)"
	$(PIP) -r requirements-dev.txt
	touch $@

# Rebuild the sample and test plugins (sandbox/plugins/src, tests/plugins/src) with ziglang from PyPI.
plugins: $(VENV)/.installed-dev
	$(BIN)/python -m sandbox.build_plugins

clean:
	rm -rf $(VENV) var
