# syntax=docker/dockerfile:1
# The one chatsys binary, built exactly as the README builds it (cargo build --release).

# Every crate of the workspace as its manifest and empty sources, whatever crates/ holds
# (a crate added or removed needs no change here), every file time zeroed: the same
# skeleton, and so the cached dependency layer of the build stage, until a manifest or
# Cargo.lock changes.
FROM rust:1.95-slim-bookworm AS skeleton
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
RUN mkdir /skeleton && cp Cargo.toml Cargo.lock /skeleton/ \
    && for manifest in crates/*/Cargo.toml; do \
        crate=${manifest%/Cargo.toml}; \
        mkdir -p "/skeleton/$crate/src" && cp "$manifest" "/skeleton/$crate/"; \
        if [ -f "$crate/src/lib.rs" ]; then touch "/skeleton/$crate/src/lib.rs"; fi; \
        if [ -f "$crate/src/main.rs" ]; then echo 'fn main() {}' >"/skeleton/$crate/src/main.rs"; fi; \
    done \
    && find /skeleton -exec touch -h -d @0 {} +

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# make: jemalloc, the binary's allocator, is built from source by its crate
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
# The shipped binary carries no debug info and no symbol table: the workspace's release
# profile keeps line tables (for benchmarks and backtraces on a developer's machine), which
# would triple the image. These override that profile in this stage only (both builds below).
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols
# Dependencies first, in a layer of their own, built from the skeleton: changing the code
# does not rebuild every dependency.
COPY --from=skeleton /skeleton ./
# the allocator's settings, compiled into it
COPY .cargo .cargo
RUN cargo build --release --locked -p chatsys
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
