# The README's two commands are `make demo` and `make test`; both install what they need.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo .venv-tools/bin/uv)
RUN := $(UV) run --frozen

.PHONY: setup demo test check lint format types unit bench bench-quick bench-scrip fuzz clean vectors

# uv itself comes from PyPI when the machine lacks it; mosquitto from apt when missing.
$(UV):
	python3 -m venv .venv-tools && .venv-tools/bin/pip install --quiet uv

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --quiet
	@touch $@

# mosquitto, what builds its retain-guard plugin (gcc and the plugin headers),
# systemd-analyze, which the tests run on the shipped units, the headless browser
# the audit report is checked in, and SoftHSM2, the PKCS#11 token the key tests use.
APT_PACKAGES := mosquitto mosquitto-clients mosquitto-dev libmosquitto-dev gcc systemd chromium \
	softhsm2
mosquitto-bin:
	@{ command -v mosquitto || command -v /usr/sbin/mosquitto; } >/dev/null 2>&1 && \
	  command -v cc >/dev/null 2>&1 && \
	  command -v systemd-analyze >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 && \
	  command -v softhsm2-util >/dev/null 2>&1 && \
	  test -f /usr/include/mosquitto_plugin.h -a -f /usr/include/mosquitto.h || \
	  { echo "installing $(APT_PACKAGES) (apt-get)"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; }

setup: .venv/.synced mosquitto-bin

demo: setup
	$(RUN) micropay demo

test: check

check: setup lint types unit

lint: .venv/.synced
	$(RUN) ruff format --check .
	$(RUN) ruff check .

types: .venv/.synced
	$(RUN) mypy

unit: .venv/.synced
	$(RUN) pytest -q

format: .venv/.synced
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

# The protocol's costs, then verified + durable payments/s at one vendor over a real Mosquitto,
# both MQTT clients side by side (medians of 3 rounds; several minutes). BENCH_ARGS adds
# options to the throughput bench, e.g. BENCH_ARGS="--client mqtt5 --profile".
BENCH_ARGS ?=
bench: setup
	$(RUN) python bench/protocol_costs.py
	$(RUN) python bench/scrip_vs_payword.py
	$(RUN) python bench/vendor_throughput.py --rounds 3 $(BENCH_ARGS)

# The same in about a minute: small runs, one round, figures too noisy to compare.
bench-quick: setup
	$(RUN) python bench/protocol_costs.py --quick
	$(RUN) python bench/scrip_vs_payword.py --quick
	$(RUN) python bench/vendor_throughput.py --quick $(BENCH_ARGS)

# Scrip against PayWord on the cores: the vendor's CPU per payment in three workloads and the
# broker's per mint, medians of 5 runs, about a minute (the README's "Scrip against PayWord").
bench-scrip: .venv/.synced
	$(RUN) python bench/scrip_vs_payword.py

# Fuzzes every untrusted input, FUZZ_RUNS inputs (coverage-guided through atheris, the
# `fuzz` dependency group); findings land in fuzz/crashes/ and fail the target.
FUZZ_RUNS ?= 1000000
fuzz: .venv/.synced
	$(UV) run --frozen --group fuzz python -m fuzz.run --runs $(FUZZ_RUNS)

vectors: .venv/.synced
	$(RUN) python -m tests.vectors.generate

clean:
	rm -rf .venv .venv-tools .pytest_cache .mypy_cache .ruff_cache .hypothesis
