# syntax=docker/dockerfile:1
# The one chatsys binary, built exactly as the README builds it (cargo build --release).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# The shipped binary carries no debug info and no symbol table: the workspace's release
# profile keeps line tables (for benchmarks and backtraces on a developer's machine), which
# would triple the image. These override that profile in this stage only (both builds below).
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols
# Dependencies first, in a layer of their own: the manifests with empty crates, so that
# changing the code does not rebuild every dependency.
COPY Cargo.toml Cargo.lock ./
COPY crates/core/Cargo.toml crates/core/
COPY crates/store/Cargo.toml crates/store/
COPY crates/queue/Cargo.toml crates/queue/
COPY crates/counters/Cargo.toml crates/counters/
COPY crates/search/Cargo.toml crates/search/
COPY crates/api/Cargo.toml crates/api/
COPY crates/worker/Cargo.toml crates/worker/
COPY crates/chatsys/Cargo.toml crates/chatsys/
RUN for crate in core store queue counters search api worker; do \
        mkdir -p crates/$crate/src && touch crates/$crate/src/lib.rs; \
    done \
    && mkdir -p crates/chatsys/src && echo 'fn main() {}' > crates/chatsys/src/main.rs \
    && cargo build --release --locked -p chatsys
COPY crates crates
# newer than the stubs' build outputs, so cargo rebuilds our crates (only)
RUN find crates -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p chatsys \
    && cp target/release/chatsys /chatsys

FROM debian:bookworm-slim
# curl: for the healthchecks of docker-compose.yml
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/chatsys --create-home chatsys
COPY --from=build /chatsys /usr/local/bin/chatsys
USER chatsys
WORKDIR /var/lib/chatsys
ENV CHATSYS_LISTEN=0.0.0.0:8080 \
    CHATSYS_DATA_DIR=/var/lib/chatsys \
    CHATSYS_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["chatsys"]
CMD ["serve"]
