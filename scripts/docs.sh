#!/usr/bin/env bash
# Builds the book in docs/ into docs/book with mdBook, installed from the crate registry when it
# is missing (the renderer only: no live-reload server). Any warning mdBook prints fails the
# build. Internal links and anchors, and the configuration page against the code, are checked
# by the workspace's tests (shared/src/config/reference.rs, tests/docs.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
mdbook_version=0.5.4

mdbook=$(command -v mdbook || true)
if [ -z "$mdbook" ] && [ -x "$HOME/.cargo/bin/mdbook" ]; then mdbook=$HOME/.cargo/bin/mdbook; fi
if [ -z "$mdbook" ] || ! "$mdbook" --version | grep -q "v$mdbook_version"; then
  echo "docs: installing mdbook $mdbook_version"
  cargo install mdbook --version "$mdbook_version" --locked --no-default-features --features search --quiet
  mdbook=$HOME/.cargo/bin/mdbook
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "$mdbook" build docs >"$log" 2>&1; then
  cat "$log"
  echo "docs: mdbook build failed"
  exit 1
fi
if grep -E 'WARN|ERROR' "$log"; then
  echo "docs: mdbook printed warnings (above); they count as errors"
  exit 1
fi
echo "docs: built docs/book/index.html"
