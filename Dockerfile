# Taxiway: one image with the three services (ingest, projector, api); docker-compose.yml picks
# the command. Build: docker build -t taxiway .
FROM rust:1-bookworm AS build
# librdkafka is built from source by rdkafka-sys (configure + make, zlib from the system).
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential perl zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The commit built, for taxiway_build_info on /metrics (docker-compose.yml passes it).
ARG GIT_SHA=unknown
ENV TAXIWAY_GIT_SHA=${GIT_SHA}
COPY . .
RUN cargo build --release --locked -p taxiway-ingest -p taxiway-projector -p taxiway-api \
    && cp target/release/ingest target/release/projector target/release/api /usr/local/bin/

FROM debian:bookworm-slim
# ca-certificates for HTTPS Workbenches, zlib for librdkafka, curl for health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates zlib1g curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin taxiway
COPY --from=build /usr/local/bin/ingest /usr/local/bin/projector /usr/local/bin/api /usr/local/bin/
# The ATT&CK releases shipped with Taxiway, with MITRE's notice (data/attack/README.md, LICENSE.txt).
COPY data/attack /usr/share/taxiway/attack
USER taxiway
ENV TAXIWAY_API_LISTEN=0.0.0.0:8000
EXPOSE 8000
CMD ["api"]
