# Switchboard — the two commands a newcomer needs:
#   make run    build the web client (installs its npm packages) and the hub
#               (release), then start it on the embedded default (dev mode:
#               sign in by name) and print the URL to open
#   make test   every test: lint, Rust unit/property/integration tests (with
#               throwaway PostgreSQL and Redis servers for the store's and the
#               cluster's tests), interop
#               tests with the official socket.io-client (installs npm packages),
#               schemathesis against the publish API (installs it from PyPI),
#               python-socketio 5 and 4 (PyPI) and the Rust crate rust_socketio
#               (crates.io, a crate of its own in tests/rust-client),
#               browser tests of the web client in Debian's Chromium
#               (installs Chromium with apt-get and the npm packages)
# and, to try a cluster:
#   make cluster  Redis, PostgreSQL, three nodes serving the web client and
#               HAProxy in front, on this machine (installs what is missing);
#               prints the URL to open, Ctrl-C stops everything

CARGO ?= cargo
NPM ?= npm
BIN := target/release/switchboard

.PHONY: run test lint rust-test interop schemathesis python-clients rust-client browser build release web cluster

run: web release
	$(BIN) serve $(if $(CONFIG),--config $(CONFIG),)

# A cluster on this machine, to try one: throwaway Redis and PostgreSQL
# (installed with apt-get when missing), three nodes serving the web client,
# HAProxy in front (tests/lb/haproxy.cfg); prints the URL to open, Ctrl-C
# stops everything. CLUSTER_PORT=8080 by default. See scripts/cluster.sh.
cluster: web release
	scripts/cluster.sh $(CURDIR)/$(BIN)

# The web client, built into web/dist/ (served by the hub at /).
web:
	cd web && $(NPM) ci --no-audit --no-fund --loglevel=error && $(NPM) run build

release:
	$(CARGO) build --release -p switchboard

build:
	$(CARGO) build --workspace --all-targets

test: lint rust-test interop schemathesis python-clients rust-client browser

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The PostgreSQL store tests and the cluster tests get throwaway servers on
# loopback (installed with apt-get when missing); see
# tests/postgres/with-postgres.sh and tests/redis/with-redis.sh.
rust-test:
	tests/redis/with-redis.sh tests/postgres/with-postgres.sh $(CARGO) test --workspace

schemathesis: release
	tests/schemathesis/run.sh $(CURDIR)/$(BIN)

# python-socketio from PyPI, 5.18.1 (Engine.IO v4) and 4.6.1 (v3), each in
# a venv under target/python-clients/ (python3-venv installed when missing),
# against one server; see tests/python/run.sh.
python-clients: release
	tests/python/run.sh $(CURDIR)/$(BIN)

# rust_socketio 0.6.0 from crates.io (Engine.IO v4), a crate of its own
# outside the workspace (tests/rust-client, built into target/rust-client/;
# OpenSSL's headers installed when missing), against one server.
rust-client: release
	tests/rust-client/run.sh $(CURDIR)/$(BIN)

# The web client in a real browser (playwright-core driving Debian's
# Chromium, installed when missing); see tests/browser/run.sh.
browser: web release
	tests/browser/run.sh $(CURDIR)/$(BIN)

# The cluster interop tests (cluster.test.mjs, lb.test.mjs, faults.test.mjs)
# run their nodes on a throwaway Redis and PostgreSQL, as the Rust tests do;
# lb.test.mjs and faults.test.mjs (a node killed with SIGKILL) put HAProxy in
# front of three (tests/lb/haproxy.sh installs it when missing);
# cluster-script.test.mjs runs `make cluster`'s script, web client included.
interop: web release
	cd tests/interop && $(NPM) ci --no-audit --no-fund --loglevel=error
	tests/lb/haproxy.sh --install
	tests/redis/with-redis.sh tests/postgres/with-postgres.sh \
	  sh -c 'cd tests/interop && INTEROP_SERVER_BIN=$(CURDIR)/$(BIN) $(NPM) test --silent'

# --- conformance: official Engine.IO / Socket.IO protocol test suites --------
#
#   make conformance SUITES=/path/to/suites [RUNS=5] [SERVER="cmd ..."]
#
# SUITES holds engine.io-protocol/ and socket.io-protocol/ (each with its
# test-suite/ inside); they are used unmodified and never copied into the repo.
# Without SERVER, the release binary is built and run with
# tests/conformance.toml. To measure the reference Node.js server instead:
#
#   (cd tests/conformance/reference && npm ci)
#   make conformance SUITES=/work/suites SERVER="node tests/conformance/reference/server.mjs"
#
# Other knobs (environment, see tests/conformance/run.sh): ONLY=engine.io|socket.io,
# STARTUP_TIMEOUT=30, RUN_TIMEOUT=300, OUT=dir (keep mocha JSON reports + server log).


RUNS ?= 5

.PHONY: conformance
conformance:
	@if [ -z "$(SUITES)" ]; then \
	  echo 'usage: make conformance SUITES=DIR [RUNS=5] [SERVER="cmd ..."]' >&2; exit 2; \
	fi
	@if [ -z "$$SERVER" ]; then cargo build --release -p switchboard; fi
	SUITES="$(SUITES)" RUNS="$(RUNS)" tests/conformance/run.sh

# --- benchmarks: Switchboard against the Node.js socket.io@4 reference -------
#
#   make bench        full matrix, 3 runs per server and case, about 18 min;
#                     regenerates docs/BENCHMARKS.md (between its bench markers),
#                     docs/bench-results.jsonl and docs/bench-chart.svg; then
#                     bench-cluster
#   make bench-quick  small sizes, 1 run: a smoke test of a minute or two, written
#                     to target/bench-quick/ (docs/ is left alone)
#   make bench-cluster  one node alone, one node in cluster mode and three nodes
#                     on one Redis, alternating, 3 runs each (about 20 min):
#                     fan-out, Redis per broadcast, 3 x 19,000 connections, a
#                     node killed under 3,000 clients (behind HAProxy, when
#                     installed); writes docs/cluster-results.jsonl and
#                     docs/cluster-report.md
#   make bench-cluster-quick  the same at small sizes, 1 run, in target/bench-cluster/
#
# Options for loadgen suite: BENCH_ARGS="--only fanout,echo --reps 5". See
# docs/BENCHMARKS.md for single scenarios by hand.

BENCH_ARGS ?=
LOADGEN := target/release/loadgen

.PHONY: bench bench-quick bench-build bench-ceiling bench-cluster bench-cluster-quick bench-cluster-build

bench-build:
	$(CARGO) build --release -p switchboard -p loadgen
	@if [ ! -d bench/peers/node/node_modules ]; then \
	  cd bench/peers/node && $(NPM) ci --no-audit --no-fund --loglevel=error; \
	fi

# The chat and notify cases run on SQLite and on a throwaway PostgreSQL server
# (with-postgres.sh exports its URL; without PostgreSQL those runs are skipped).
bench: bench-build bench-cluster-build
	tests/postgres/with-postgres.sh $(LOADGEN) suite --reps 3 $(BENCH_ARGS)
	SB_BENCH_CLUSTER_OPTIONAL=1 bench/cluster.sh --reps 3 --out docs/cluster-results.jsonl

# Starts its own throwaway Redis and PostgreSQL (bench/cluster.sh); no Node
# peer, but the kill case's clients are the interop tests' socket.io-client.
bench-cluster: bench-cluster-build
	bench/cluster.sh --reps 3 --out docs/cluster-results.jsonl $(BENCH_CLUSTER_ARGS)

bench-cluster-quick: bench-cluster-build
	bench/cluster.sh --quick $(BENCH_CLUSTER_ARGS)

bench-cluster-build:
	$(CARGO) build --release -p switchboard -p loadgen
	@if [ ! -d tests/interop/node_modules ]; then \
	  cd tests/interop && $(NPM) ci --no-audit --no-fund --loglevel=error; \
	fi

bench-quick: bench-build
	tests/postgres/with-postgres.sh $(LOADGEN) suite --quick $(BENCH_ARGS)

# The machine's ceiling for echo: plain TCP round trips on loopback, no
# protocol, 1,000 connections, 3 runs (see docs/BENCHMARKS.md).
bench-ceiling:
	$(CARGO) build --release -p loadgen --example tcp_echo_ceiling
	for i in 1 2 3; do target/release/examples/tcp_echo_ceiling 1000 8; done
