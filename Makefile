# The two commands of the README. Everything else is set-up they share.
#   make demo   set up, then run the full local demonstration (simulated camera)
#   make test   set up, then run ruff, mypy --strict and the whole pytest suite

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup system-packages bench soak demo-release-log pi-check

demo: setup
	$(BIN)/python -m demo --out demo-out

# The release log on its own: log, three witnesses, publisher, doorbell gate, owner monitor (ADR 0014).
demo-release-log: setup
	$(BIN)/python -m demo.release_log --out demo-out/release-log

# pytest exits 5 when it collected no tests; make treats that, like any failure, as one.
test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

# The whole-system fault soak (docs/soak.md), longer than the short run inside `make test`.
SOAK_SEED ?= 1
SOAK_ROUNDS ?= 24
soak: setup
	$(BIN)/python -m tests.soak --seed $(SOAK_SEED) --rounds $(SOAK_ROUNDS)

bench: setup
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python "$$b" || exit 1; done

setup: system-packages $(STAMP)

# System packages the agent, the cloud stub and the tests need. Each is looked for
# first and installed through apt only when missing, so a second run does no work.
# An apt-installed mosquitto would start a broker on port 1883 as a service; the tests
# start their own brokers, so that service is stopped and disabled right after install.
system-packages:
	@missing=""; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v age >/dev/null || missing="$$missing age"; \
	command -v ffprobe >/dev/null || missing="$$missing ffmpeg"; \
	command -v shellcheck >/dev/null || missing="$$missing shellcheck"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v runuser >/dev/null || [ -x /usr/sbin/runuser ] || missing="$$missing util-linux"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v cc >/dev/null || missing="$$missing gcc libc6-dev"; \
	command -v tc >/dev/null || [ -x /usr/sbin/tc ] || missing="$$missing iproute2"; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	[ -z "$$missing" ] && exit 0; \
	echo "installing system packages:$$missing"; \
	command -v apt-get >/dev/null || { echo "apt-get not found: install$$missing by hand" >&2; exit 1; }; \
	[ -z "$(SUDO)" ] || command -v sudo >/dev/null || { echo "not root and no sudo: install$$missing as root" >&2; exit 1; }; \
	$(SUDO) apt-get update -qq || exit 1; \
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing || exit 1; \
	case " $$missing " in *" mosquitto "*) \
		if [ -d /run/systemd/system ]; then $(SUDO) systemctl disable --now mosquitto >/dev/null 2>&1 || true; \
		elif [ -x /etc/init.d/mosquitto ]; then $(SUDO) /etc/init.d/mosquitto stop >/dev/null 2>&1 || true; \
		$(SUDO) update-rc.d mosquitto disable >/dev/null 2>&1 || true; fi;; \
	esac; \
	case " $$missing " in *" postgresql "*) \
		if [ -d /run/systemd/system ]; then $(SUDO) systemctl disable --now postgresql >/dev/null 2>&1 || true; \
		elif [ -x /etc/init.d/postgresql ]; then $(SUDO) /etc/init.d/postgresql stop >/dev/null 2>&1 || true; \
		$(SUDO) update-rc.d postgresql disable >/dev/null 2>&1 || true; fi;; \
	esac

$(STAMP): pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The Raspberry Pi path on a Debian 12 arm64 root under qemu (docs/raspberry-pi.md,
# "Checking the Pi path on arm64"). Not part of `make test`: it needs root, downloads a
# Debian root once (cached in PI_CHECK_CACHE) and runs for minutes.
PI_CHECK_CACHE ?= /var/cache/sealed-doorbell
pi-check: setup
	$(SUDO) env PI_CHECK_BIN=$(abspath $(BIN)) deploy/raspberry-pi/pi-check.sh $(PI_CHECK_CACHE)
