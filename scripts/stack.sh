#!/usr/bin/env bash
# Installs and starts the local stack Sprayer needs on loopback: Redis, RabbitMQ and a
# MongoDB-compatible server. Every step checks before it acts, so running it twice is safe.
#
#   scripts/stack.sh deps   install what is missing (Debian packages, the MongoDB-compatible server)
#   scripts/stack.sh up     deps, then start each server that is not answering yet
#   scripts/stack.sh test   up, plus what the tests' protocol peers need (Python and npm packages,
#                           Debian's chromium for the browser test)
#   scripts/stack.sh bench  up, plus node and the socket.io peer's npm packages for `make bench`
#   scripts/stack.sh soak   bench, plus the SMSC and SMTP peers of the tests for `make soak`
#   scripts/stack.sh down   stop the servers this script started
#
# Environment: SPRAYER_MONGODB_URL (use that MongoDB; nothing is installed or started for it),
# SPRAYER_STACK_DIR (data and logs, default .stack/ in the checkout).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
root_dir=$(cd "$(dirname "$0")/.." && pwd)
stack_dir=${SPRAYER_STACK_DIR:-$root_dir/.stack}
mkdir -p "$stack_dir"

secantus_version=0.5.3-beta.196
redis_port=6379
amqp_port=5672
mongo_port=27017

log() { printf 'stack: %s\n' "$*" >&2; }
# shellcheck source=scripts/venv.sh
. "$root_dir/scripts/venv.sh"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2 seconds=${3:-60}
  for _ in $(seq 1 $((seconds * 4))); do
    if port_open "$port"; then return 0; fi
    sleep 0.25
  done
  log "$name did not open 127.0.0.1:$port within ${seconds}s; see $stack_dir/*.log"
  return 1
}

apt_updated=no
apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" = no ]; then as_root apt-get update -q; apt_updated=yes; fi
  log "installing ${missing[*]}"
  as_root apt-get install -y -q -o Dpkg::Options::=--force-confold "${missing[@]}"
}

mongo_binary() {
  command -v secantusd-rs 2>/dev/null || { [ -x "$HOME/.cargo/bin/secantusd-rs" ] && echo "$HOME/.cargo/bin/secantusd-rs"; } || true
}

deps() {
  apt_install redis-server rabbitmq-server
  if [ -n "${SPRAYER_MONGODB_URL:-}" ]; then return 0; fi
  if [ -z "$(mongo_binary)" ]; then
    apt_install cmake
    log "building the MongoDB-compatible server secantus-mdb $secantus_version (4 to 7 minutes on 2 cores alone, longer beside another build; once)"
    # Its release profile asks for thin LTO in one codegen unit (about 10 minutes on 2 cores);
    # without LTO in 16 units it takes 4 to 7 (5 of its 12 CPU minutes WiredTiger's C) and
    # the server serves the tests and benchmarks as well.
    local quick=(env CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16)
    if ! "${quick[@]}" cargo install secantus-mdb --version "$secantus_version" --ignore-rust-version --locked \
        >"$stack_dir/secantus-build.log" 2>&1 &&
       ! "${quick[@]}" cargo install secantus-mdb --version "$secantus_version" --ignore-rust-version \
        >>"$stack_dir/secantus-build.log" 2>&1; then
      log "building secantus-mdb failed (see $stack_dir/secantus-build.log); using its Python server"
      python_fallback
    fi
  fi
}

# What the tests' peers need: openssl (the test CA), Python and npm packages, and Chromium for
# the browser test (driven by npm playwright-core).
test_deps() {
  apt_install openssl chromium
  peer_venv
  peer_node
}

# What `make bench` needs beyond the servers: node and the socket.io peer's npm packages.
bench_deps() {
  if ! command -v npm >/dev/null 2>&1; then apt_install nodejs npm; fi
  local peer="$root_dir/bench/socketio"
  if [ ! -d "$peer/node_modules/socket.io" ]; then
    log "installing the socket.io peer's npm packages"
    (cd "$peer" && npm ci --no-audit --no-fund --silent)
  fi
}

# The Python packages the test peers use, in their own virtualenv.
peer_venv() {
  make_venv "$stack_dir/venv"
  if ! "$stack_dir/venv/bin/python" -c 'import aiosmtpd, http_ece, schemathesis, standardwebhooks, httpx, pytest, wheel' 2>/dev/null; then
    log "installing the test peers' Python packages (and the Python SDK's httpx and pytest)"
    "$stack_dir/venv/bin/pip" install -q 'aiosmtpd==1.4.*' 'http_ece==1.2.*' 'schemathesis==4.32.*' 'standardwebhooks==1.*' \
      'httpx==0.28.*' 'pytest>=8,<10' 'wheel>=0.40'
  fi
}

# The npm packages the test peers use (the SMSC simulator), from tests/peers/package-lock.json.
peer_node() {
  local peers="$root_dir/tests/peers"
  [ -f "$peers/package-lock.json" ] || return 0
  if ! command -v npm >/dev/null 2>&1; then apt_install nodejs npm; fi
  if [ ! -d "$peers/node_modules/smpp" ] || [ ! -d "$peers/node_modules/playwright-core" ]; then
    log "installing the test peers' npm packages"
    (cd "$peers" && npm ci --no-audit --no-fund --silent)
  fi
}

python_fallback() {
  make_venv "$stack_dir/venv"
  "$stack_dir/venv/bin/pip" install -q secantusdb
}

start_redis() {
  if port_open $redis_port; then return 0; fi
  log "starting redis-server on 127.0.0.1:$redis_port"
  redis-server --bind 127.0.0.1 --port $redis_port --daemonize yes --save '' --appendonly no \
    --dir "$stack_dir" --logfile "$stack_dir/redis.log" --pidfile "$stack_dir/redis.pid"
  wait_port $redis_port redis 20
}

start_rabbitmq() {
  if port_open $amqp_port; then return 0; fi
  log "starting rabbitmq-server on 127.0.0.1:$amqp_port"
  # The broker runs as the rabbitmq user with its data in this checkout's stack folder, so a
  # fresh checkout starts a fresh broker and never recovers queues left by older runs. It gets
  # every file handle the machine allows: a restarted broker recovers the queues left by earlier
  # test runs (one file handle each) before it opens its port.
  local data="$stack_dir/rabbitmq"
  mkdir -p "$data/mnesia" "$data/log"
  as_root chown -R rabbitmq:rabbitmq "$data"
  as_root env RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$amqp_port \
    RABBITMQ_DIST_PORT=25672 ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_MNESIA_BASE="$data/mnesia" RABBITMQ_LOG_BASE="$data/log" \
    bash -c 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; nohup rabbitmq-server >"$0" 2>&1 &' "$stack_dir/rabbitmq.log"
  wait_port $amqp_port rabbitmq 120
}

start_mongo() {
  if [ -n "${SPRAYER_MONGODB_URL:-}" ]; then return 0; fi
  if port_open $mongo_port; then return 0; fi
  mkdir -p "$stack_dir/mongo"
  local binary
  binary=$(mongo_binary)
  if [ -n "$binary" ]; then
    log "starting secantusd-rs on 127.0.0.1:$mongo_port"
    nohup "$binary" --port $mongo_port --storage-path "$stack_dir/mongo" >"$stack_dir/mongo.log" 2>&1 &
  else
    "$stack_dir/venv/bin/python" -c 'import secantus' 2>/dev/null || python_fallback
    log "starting the Python secantus server on 127.0.0.1:$mongo_port"
    nohup "$stack_dir/venv/bin/python" -m secantus --port $mongo_port --storage-path "$stack_dir/mongo" \
      >"$stack_dir/mongo.log" 2>&1 &
  fi
  echo $! >"$stack_dir/mongo.pid"
  wait_port $mongo_port mongodb 60
}

up() {
  deps
  start_redis
  start_rabbitmq
  start_mongo
  log "redis 127.0.0.1:$redis_port, rabbitmq 127.0.0.1:$amqp_port, mongodb ${SPRAYER_MONGODB_URL:-127.0.0.1:$mongo_port}"
}

down() {
  if [ -f "$stack_dir/redis.pid" ]; then kill "$(cat "$stack_dir/redis.pid")" 2>/dev/null || true; rm -f "$stack_dir/redis.pid"; fi
  if [ -f "$stack_dir/mongo.pid" ]; then kill "$(cat "$stack_dir/mongo.pid")" 2>/dev/null || true; rm -f "$stack_dir/mongo.pid"; fi
  if port_open $amqp_port; then as_root rabbitmqctl stop >/dev/null 2>&1 || true; fi
}

case "${1:-up}" in
  deps) deps ;;
  up) up ;;
  test) test_deps; up ;;
  bench) bench_deps; up ;;
  soak) bench_deps; peer_venv; peer_node; up ;;
  down) down ;;
  *) echo "usage: $0 deps|up|test|bench|soak|down" >&2; exit 2 ;;
esac
