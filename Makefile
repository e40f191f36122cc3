# Faxbridge: `make run` starts the appliance on its embedded defaults; `make test` runs the suite.
# Both set up everything first (Debian packages with apt, then .venv); a second run is fast.

PYTHON ?= python3
VENV := .venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# supervisor runs the daemon and the web UI for `make run` (systemd does on the box)
APT_PACKAGES := libspandsp-dev libtiff-tools gcc libffi-dev pkg-config python3-dev python3-venv dpkg-dev supervisor
# what the tests run against: a real registrar (its own service stays off: tests start their own)
# SIPp, which replays a recorded gateway call, and efax and HylaFAX as the far ends of the virtual
# modem line (hylafax-server wants an MTA; neither daemon is left running), and Postfix, a real
# MTA the delivery tests run privately on loopback: it is also hylafax-server's MTA (where exim4
# came with HylaFAX before, apt replaces it); preseeded "No configuration", its service stays off;
# Debian's chromium, which the browser tests drive with Playwright (no browser download);
# systemd for systemd-analyze (verify, security) on the units (installed, not run as PID 1); and
# ssh-keygen, which `faxbridge firstboot` runs to make the SSH host keys (tests/firstboot/);
# "=", not ":=": IMAGE_APT_PACKAGES is defined below (":=" expanded it empty, so a fresh machine
# never got the image's tools from `make test`)
TEST_APT_PACKAGES = kamailio sip-tester efax hylafax-server postfix chromium systemd openssh-client \
  $(IMAGE_APT_PACKAGES)
# `make image` (and the boot test in `make test`, which builds the image and boots it under QEMU):
# mmdebstrap under qemu-user, the arm64 cross compiler for the spandsp binding, the partitioning
# tools that need no loop device, RAUC for the update bundle, and QEMU's arm64 machine
IMAGE_APT_PACKAGES := mmdebstrap qemu-user-static binfmt-support qemu-system-arm mtools dosfstools e2fsprogs \
  fdisk xz-utils bmap-tools rauc squashfs-tools gcc-aarch64-linux-gnu zstd curl iproute2
IMAGE_OUT ?= build/image
IMAGE_CACHE ?= build/image-cache
STAMP := $(VENV)/.installed

.PHONY: all venv apt image run test test-fast lint hwtest bench clean selftest screenshots fuzz fuzz-seeds

all: venv

apt:
	@missing=""; for p in $(APT_PACKAGES) $(APT_EXTRA); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  case " $$missing " in *" postfix "*) echo "postfix postfix/main_mailer_type select No configuration" \
	    | $(SUDO) debconf-set-selections;; esac; \
	  $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  case "$$missing" in *kamailio*) $(SUDO) systemctl disable --now kamailio >/dev/null 2>&1 || true;; esac; \
	  case "$$missing" in *hylafax*) $(SUDO) systemctl disable --now hylafax exim4 >/dev/null 2>&1 || true;; esac; \
	  case " $$missing " in *" postfix "*) $(SUDO) systemctl disable --now postfix >/dev/null 2>&1 || true;; esac; \
	fi

$(STAMP): pyproject.toml setup.py appliance/spandsp/_build.py $(wildcard appliance/spandsp/*.c appliance/spandsp/*.h appliance/spandsp/*.cdef)
	$(MAKE) apt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip setuptools wheel cffi
	$(VENV)/bin/pip install -q --no-build-isolation -e '.[test]'
	$(VENV)/bin/python -m appliance selftest
	touch $(STAMP)

venv: $(STAMP)

# The daemon and the web UI as two supervisor programs (systemd/supervisord.conf.in, filled in
# with this state directory and venv), in the foreground: a crashed one is restarted alone, as
# systemd does on the box; Ctrl-C stops both.  STATE_DIR=DIR and CONFIG=FILE choose others.
run: venv
	@conf=$$($(VENV)/bin/python -m appliance.supervisorconf $(if $(STATE_DIR),--state-dir $(STATE_DIR)) \
	  $(if $(CONFIG),--config $(CONFIG)) --terminal) && exec supervisord -n -c "$$conf"

# The SD-card image (image/build.sh): faxbridge-<version>-arm64.img.xz with .sha256 and .bmap, and
# the signed update bundle .raucb, in $(IMAGE_OUT). Needs root (sudo is used when not root).
image: venv
	$(MAKE) --no-print-directory apt APT_EXTRA="$(IMAGE_APT_PACKAGES)"
	$(SUDO) env PYTHON=$(abspath $(VENV))/bin/python image/build.sh $(IMAGE_OUT) $(IMAGE_CACHE)

selftest: venv
	$(VENV)/bin/python -m appliance selftest

# The whole suite. Real-time fax calls (30-90 s each) run in parallel workers.
test: venv
	$(MAKE) --no-print-directory apt APT_EXTRA="$(TEST_APT_PACKAGES)"
	$(VENV)/bin/python -m pytest -n $${PYTEST_WORKERS:-4} --dist loadgroup --durations=30

# ruff (lint, format) and mypy over appliance/, as tests/test_lint.py runs them in `make test`
# (decision 29); `make lint FIX=1` applies ruff's safe fixes and formats first.
lint: venv
	$(if $(FIX),$(VENV)/bin/ruff check --fix appliance && $(VENV)/bin/ruff format appliance)
	$(VENV)/bin/ruff check appliance
	$(VENV)/bin/ruff format --check appliance
	$(VENV)/bin/mypy

# Everything but the real-time calls and the short fuzz runs: the protocol libraries, in seconds.
test-fast: venv
	$(VENV)/bin/python -m pytest -m "not slow and not fuzz"

# Coverage-guided fuzzing (atheris) of every parser that takes outside input, tests/fuzz/run.py:
# FUZZ_TIME seconds per target (or FUZZ_RUNS executions), FUZZ_TARGETS=sip_message,sdp to choose,
# FUZZ_JOBS targets at a time. Keeps a minimised corpus in tests/fuzz/corpus/ (commit it) and
# saves crash, hang and out-of-memory inputs in tests/fuzz/crashes/ (not committed).
FUZZ_TIME ?= 60
FUZZ_JOBS ?= 1
fuzz: venv
	$(VENV)/bin/python -m tests.fuzz.run $(if $(FUZZ_RUNS),--runs $(FUZZ_RUNS),--time $(FUZZ_TIME)) \
	  --jobs $(FUZZ_JOBS) $(if $(FUZZ_TARGETS),--targets $(FUZZ_TARGETS))

# Add seed inputs made from the tests, the captures, the modem dialogues and README's examples
# to the corpus (the next `make fuzz` keeps those that add coverage).
fuzz-seeds: venv
	$(VENV)/bin/python -m tests.fuzz.seeds

# Real hardware (a modem on a serial port): opt-in, described by FAXBRIDGE_HW_* variables;
# every test says why it skips.  See hwtests/README.md for the bench.
hwtest: venv
	$(MAKE) --no-print-directory apt APT_EXTRA="efax libtiff-tools"
	$(VENV)/bin/python -m pytest -v -s -rs hwtests

# The automated part of the bench (hwtests/BENCH.md) from a laptop on a real box's LAN: BOX= its
# name or address; BENCH_ARGS= more options (--ssh admin@BOX, --smtp-listen, update bundles, see
# `python -m hwtests.bench --help`); the password from FAXBRIDGE_BENCH_PASSWORD. Exit 1 on a FAIL.
.PHONY: hwbench
hwbench: venv
	@test -n "$(BOX)" || { echo "usage: make hwbench BOX=faxbridge.local [BENCH_ARGS='--ssh admin@faxbridge.local ...']" >&2; exit 2; }
	$(VENV)/bin/python -m hwtests.bench --box "$(BOX)" $(BENCH_ARGS)

bench: venv
	$(VENV)/bin/python -m tests.bench.bench_calls
	$(VENV)/bin/python -m tests.bench.bench_class1
	$(VENV)/bin/python -m tests.bench.bench_faxlist
	$(VENV)/bin/python -m tests.bench.bench_delivery
	$(VENV)/bin/python -m tests.bench.bench_gate
	$(VENV)/bin/python -m tests.bench.bench_outbound_queue
	$(VENV)/bin/python -m tests.bench.bench_render

# The README's screenshots of the web UI (docs/screenshots/), from a real appliance in chromium.
screenshots: venv
	$(MAKE) --no-print-directory apt APT_EXTRA="chromium"
	$(VENV)/bin/python -m tests.browser.screenshots docs/screenshots

clean:
	rm -rf $(VENV) build *.egg-info appliance/spandsp/_spandsp.*
