# The two commands of the README. Everything else is set-up they share.
#   make demo   set up, then run the full local demonstration (simulated camera)
#   make test   set up, then run ruff, mypy --strict and the whole pytest suite

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup system-packages bench

demo: setup
	$(BIN)/python -m demo --out demo-out

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

bench: setup
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python "$$b" || exit 1; done

setup: system-packages $(STAMP)

# System packages the agent, the cloud stub and the tests need. Installed through
# apt only when missing, so a second run does no work.
system-packages:
	@missing=""; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v age >/dev/null || missing="$$missing age"; \
	command -v ffprobe >/dev/null || missing="$$missing ffmpeg"; \
	command -v shellcheck >/dev/null || missing="$$missing shellcheck"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
		if [ -x /usr/sbin/mosquitto ]; then $(SUDO) systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi; \
	fi

$(STAMP): pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)
