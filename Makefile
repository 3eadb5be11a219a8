# The two commands of the README's contract: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.gengap-installed

.PHONY: demo test lint install clean browser

$(PY):
	python3 -m venv $(VENV)

# Reinstall when the package metadata changes; torch first so that pip takes the
# pinned CPU wheel and never resolves a CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gengap demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The report's browser test drives Debian's Chromium: install it when it is missing (as root,
# or with sudo). If that fails, make test goes on and that test skips, saying why.
CHROMIUM ?= /usr/bin/chromium

browser: | $(PY)
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian's chromium for the report's browser test"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  { $$SUDO apt-get update -qq && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	    > $(VENV)/chromium-install.log 2>&1 || \
	  echo "could not install chromium (see $(VENV)/chromium-install.log): the report's browser test will skip"; }

test: lint browser
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
