#!/usr/bin/env bash
# The style checks `make test` runs before the tests, so that style rot fails CI: formatting,
# clippy with every warning an error, and the API docs of the workspace's own crates with
# warnings (broken intra-doc links among them) as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "lint: cargo fmt --check"
cargo fmt --all -- --check
echo "lint: cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "lint: cargo doc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
