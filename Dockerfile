# syntax=docker/dockerfile:1
#
# Sprayer's container image: every binary, one image. The command picks the role:
#   sprayer run                          every service in one process (the default)
#   sprayer-accepter                     the REST API            (8080; admin API 8082 when admin.token is set)
#   sprayer-dispatcher --channel http    one channel's dispatcher (ops endpoints on 9101)
#   sprayer-feeder                       the status feeder        (ops endpoints on 9102)
#   sprayer-events                       event feeds and endpoints (ops endpoints on 9103)
#   sprayer-scheduler                    scheduled sends and escalation steps (ops endpoints on 9104)
#   sprayer-deliverer                    a WebSocket deliverer    (8081)
#   sprayer admin create-app --name X    the administration CLI
#
#   docker build -t sprayer:local .
#
# Settings: /etc/sprayer/sprayer.toml (written below: listeners on every interface, JSON logs),
# then SPRAYER_<SECTION>_<KEY> variables, which win. Never set another variable starting with
# SPRAYER_ in the container: every such name is read as a setting and an unknown one stops the
# process at start.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build ------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src
COPY . .
# The caches keep the registry and the build directory between builds; the binaries are copied
# out of the cache mount so that the next stage can take them.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p sprayer -p sprayer-accepter -p sprayer-dispatcher -p sprayer-feeder -p sprayer-events \
        -p sprayer-scheduler -p sprayer-deliverer \
        --bins \
 && mkdir -p /out \
 && cp target/release/sprayer target/release/sprayer-accepter target/release/sprayer-dispatcher \
       target/release/sprayer-feeder target/release/sprayer-events target/release/sprayer-deliverer \
       target/release/sprayer-scheduler /out/

# ---- run --------------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: the providers' and relays' TLS; curl: the HEALTHCHECK below and compose's.
# Versions are not pinned: Debian's security updates replace them within a release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sprayer \
 && useradd --system --uid 10001 --gid sprayer --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin sprayer \
 && mkdir -p /etc/sprayer

# Container defaults: listen on every interface (the defaults are loopback). The admin API stays
# on loopback unless admin.listen and admin.public say otherwise; store URLs, secrets and channels
# come from the environment (see docker-compose.yml and k8s/).
COPY <<'EOF' /etc/sprayer/sprayer.toml
# Defaults of the Sprayer image; SPRAYER_<SECTION>_<KEY> variables win over every key here.
[accepter]
listen = "0.0.0.0:8080"

[deliverer]
listen = "0.0.0.0:8081"

[dispatcher]
ops_listen = "0.0.0.0:9101"

[feeder]
ops_listen = "0.0.0.0:9102"

[events]
ops_listen = "0.0.0.0:9103"

[scheduler]
ops_listen = "0.0.0.0:9104"

[telemetry]
json = true
filter = "info"
EOF

COPY --from=builder /out/ /usr/local/bin/

ENV SPRAYER_CONFIG=/etc/sprayer/sprayer.toml \
    HEALTHCHECK_URL=http://127.0.0.1:8080/readyz
USER 10001:10001
# API, deliverer, admin API, dispatcher ops, feeder ops, events ops, scheduler ops.
EXPOSE 8080 8081 8082 9101 9102 9103 9104
# Right for `sprayer run` and the accepter; other roles set HEALTHCHECK_URL (compose sets its own
# healthchecks, Kubernetes uses its probes and ignores this).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS -o /dev/null \"$HEALTHCHECK_URL\" || exit 1"]
CMD ["sprayer", "run"]
