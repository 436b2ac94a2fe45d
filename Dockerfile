# syntax=docker/dockerfile:1.7
# temporal-bootstrap image: multi-stage Rust build, then a slim non-root runtime.
#checkov:skip=CKV_DOCKER_2:Runs under Kubernetes, which ignores HEALTHCHECK; the chart probes /healthz and /readyz on the daemon port
ARG RUST_VERSION=1.94
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
# Manifests first so the dependency build is cached apart from the sources.
COPY Cargo.toml Cargo.lock ./
COPY bootstrap/ bootstrap/
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin temporal-bootstrap \
    && install -D -m 0755 target/release/temporal-bootstrap /out/temporal-bootstrap

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="temporal-bootstrap" \
      org.opencontainers.image.description="Provisions and keeps converged a self-hosted Temporal platform" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# CA roots for TLS to PostgreSQL, Elasticsearch/OpenSearch, Prometheus and Grafana.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/temporal-bootstrap /usr/local/bin/temporal-bootstrap
# Same uid/gid as the chart's securityContext (runAsUser 10001); no shell login, no home writes.
RUN groupadd --system --gid 10001 bootstrap \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin bootstrap
USER 10001:10001
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/temporal-bootstrap"]
CMD ["--help"]
