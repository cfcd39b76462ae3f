# syntax=docker/dockerfile:1
# One image per worker: docker build --build-arg WORKER=echo -t warren-echo .
# compose.yaml builds one service per worker this way.

FROM rust:1-bookworm AS builder
ARG WORKER
RUN test -n "$WORKER" || { echo "build with --build-arg WORKER=<name>, e.g. WORKER=echo" >&2; exit 1; }
WORKDIR /src
COPY . .
# The registry cache survives between builds; target/ stays in the layer so the
# runtime stage can copy the binary out of it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    cargo build --release --locked -p "warren-$WORKER"

FROM debian:bookworm-slim
ARG WORKER
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 warren \
    && useradd --system --uid 10001 --gid warren --home-dir /var/lib/warren --create-home warren
COPY --from=builder /src/target/release/warren-$WORKER /usr/local/bin/worker
# A worker keeps its own store in its working directory.
WORKDIR /var/lib/warren
# Numeric, so orchestrators can check that it is not root.
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/worker"]
