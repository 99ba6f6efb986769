# Sprayer: `make run` starts the platform, `make test` runs every test. Both install what is
# missing and start Redis, RabbitMQ and the MongoDB-compatible server on loopback first.
SHELL := /bin/bash
CARGO ?= cargo
RUN_CONFIG ?= config/local.toml

.PHONY: run test stack stack-down build lint fmt

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

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
