# Sprayer: `make run` starts the platform, `make test` runs every test. Both install what is
# missing and start Redis, RabbitMQ and the MongoDB-compatible server on loopback first.
SHELL := /bin/bash
CARGO ?= cargo
RUN_CONFIG ?= config/local.toml

.PHONY: run test bench stack stack-down build lint fmt

stack:
	@bash scripts/stack.sh up

stack-down:
	@bash scripts/stack.sh down

build:
	$(CARGO) build --release --workspace --bins

run: stack build
	SPRAYER_CONFIG=$(RUN_CONFIG) ./target/release/sprayer run

test:
	@bash scripts/stack.sh test
	bash scripts/test.sh

# Benchmarks: the local stack, the release build and the socket.io peer's npm packages, then
# every scenario (or SCENARIOS="sockets peer"); figures in bench/results/latest.json.
bench:
	@bash scripts/stack.sh bench
	$(CARGO) build --release -p sprayer -p sprayer-bench
	ulimit -n "$$(ulimit -Hn)" && ./target/release/sprayer-bench $(SCENARIOS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
