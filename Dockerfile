# One image, every daemon: `strata storaged|queryd|compactord`, plus `strata health URL`
# (the healthchecks) and `strata demo` (the compose `demo` profile).
#
# Build stage: the dependencies compile in a layer of their own, cached until Cargo.toml or
# Cargo.lock change; an edit of Strata's sources rebuilds only Strata's crates.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY shared/Cargo.toml shared/
COPY storaged/Cargo.toml storaged/
COPY queryd/Cargo.toml queryd/
COPY compactord/Cargo.toml compactord/
COPY crates/daemon/Cargo.toml crates/daemon/
COPY crates/storaged-api/Cargo.toml crates/storaged-api/
COPY crates/queryd-api/Cargo.toml crates/queryd-api/
COPY crates/compactord-api/Cargo.toml crates/compactord-api/
COPY crates/strata/Cargo.toml crates/strata/
COPY crates/testkit/Cargo.toml crates/testkit/
COPY tests/Cargo.toml tests/
# Empty targets for every workspace member, so `cargo build` compiles only the dependencies.
RUN for member in shared storaged queryd compactord crates/daemon crates/storaged-api \
        crates/queryd-api crates/compactord-api crates/strata crates/testkit tests; do \
        mkdir -p "$member/src" && touch "$member/src/lib.rs"; \
    done \
    && echo 'fn main() {}' > crates/strata/src/main.rs \
    && mkdir -p tests/it && echo 'fn main() {}' > tests/it/main.rs \
    && cargo build --release --locked -p strata
COPY . .
# COPY keeps the sources' times, which may be older than the empty targets' build.
RUN find shared storaged queryd compactord crates tests -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p strata \
    && objcopy --strip-debug target/release/strata /usr/local/bin/strata

# Runtime: the binary on a slim base, as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/strata --create-home strata
COPY --from=build /usr/local/bin/strata /usr/local/bin/strata
USER 10001:10001
WORKDIR /var/lib/strata
ENTRYPOINT ["/usr/local/bin/strata"]
