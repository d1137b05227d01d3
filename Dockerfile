# One image, three daemons: `strata storaged|queryd|compactord --config /etc/strata/strata.toml`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p strata && cp target/release/strata /usr/local/bin/strata

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/strata /usr/local/bin/strata
ENTRYPOINT ["/usr/local/bin/strata"]
