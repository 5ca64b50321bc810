# syntax=docker/dockerfile:1.7
#
# zenvelope service binaries: enclave-host, enclave-app, audit-sink, zenvelope-admission
# and the `zenvelope` CLI, in one minimal runtime image that runs as a non-root user.
#
#   docker build -t zenvelope:dev .                          # the runtime image (last stage)
#   docker build --target dev-provision -t zenvelope:dev-provision .   # compose's DEV key maker
#
# Stages:
#   builder        the official Rust image; builds every service binary with --locked.
#   runtime-base   debian:bookworm-slim + the shared libraries librdkafka links against,
#                  a `zenvelope` user (uid 10001) and the binaries. No compiler, no shell
#                  tools beyond Debian's essentials (bash and grep serve the health checks).
#   dev-provision  runtime-base + python3-boto3/-cryptography for deploy/compose/dev-provision.py
#                  (DANGER, DEV ONLY: makes throwaway keys for the compose stack).
#   runtime        the default target: runtime-base as the zenvelope user.
#
# The enclave image is NOT built from here: infra/enclave/Dockerfile.enclave-app builds it,
# because its bytes are measured (PCR0) and pinned by the KMS key policy and the SDKs.

# Rust: the locked dependency graph needs (Cargo.toml rust-version = "1.92"):
# aws-nitro-enclaves-nsm-api 0.5.2 declares rust-version 1.92, rusqlite 0.41.1 1.89.
ARG RUST_VERSION=1.92
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# librdkafka is built by rdkafka's `cmake-build` feature: cmake, a C/C++ toolchain and the
# headers of what it links (TLS, SASL, zstd, zlib, curl). Same list as scripts/setup.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libcurl4-openssl-dev libssl-dev libsasl2-dev libzstd-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target directory between builds; the binaries are
# copied out of the cached target directory so the next stage can take them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p zenvelope-enclave -p zenvelope-audit -p zenvelope-cli -p zenvelope-processors --bins \
 && mkdir -p /out \
 && for bin in enclave-host enclave-app audit-sink zenvelope zenvelope-admission; do \
      cp "target/release/$bin" /out/ || exit 1; \
    done

FROM debian:${DEBIAN_RELEASE}-slim AS runtime-base
# Runtime libraries of the build above: OpenSSL 3, curl, SASL, zstd, zlib; CA roots for
# TLS to MSK, KMS and model APIs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates libssl3 libcurl4 libsasl2-2 libzstd1 zlib1g \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid so volume ownership is predictable; no login shell, no home secrets.
RUN groupadd --system --gid 10001 zenvelope \
 && useradd --system --uid 10001 --gid zenvelope --home-dir /var/lib/zenvelope \
      --no-create-home --shell /usr/sbin/nologin zenvelope \
 && mkdir -p /etc/zenvelope /var/lib/zenvelope/dev /var/lib/zenvelope/audit \
 && chown -R zenvelope:zenvelope /var/lib/zenvelope \
 && chmod 0700 /var/lib/zenvelope/dev
COPY --from=builder /out/ /usr/local/bin/
ENV RUST_LOG=info
WORKDIR /var/lib/zenvelope
USER 10001:10001

FROM runtime-base AS dev-provision
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-boto3 python3-cryptography \
 && rm -rf /var/lib/apt/lists/*
COPY --chmod=0755 deploy/compose/dev-provision.py /usr/local/bin/zenvelope-dev-provision
USER 10001:10001
CMD ["zenvelope-dev-provision"]

FROM runtime-base AS runtime
# Every service takes --config FILE (mounted at /etc/zenvelope/) and handles SIGTERM
# itself: it drains in-flight work and commits offsets before exiting.
CMD ["zenvelope", "--help"]
USER 10001:10001
