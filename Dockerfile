# syntax=docker/dockerfile:1
# One image, three binaries: gateway, pipeline, lake (deploy/k8s picks one with `command`).
#   docker build --build-arg EDGEWAY_GIT_COMMIT=$(git rev-parse HEAD) -t edgeway:0.1.0 .
#   docker run --rm edgeway:0.1.0 --version                         →  gateway 0.1.0 (commit <sha>)
#   docker run --rm --entrypoint pipeline edgeway:0.1.0 --version   →  pipeline 0.1.0 (commit <sha>)
# The build is the `dist` profile (release + thin LTO), as `scripts/build --profile dist` (which
# also builds the benchmark binaries).

FROM rust:1.95-slim-bookworm AS build
# cmake: Pingora's zlib-ng. The rest of the toolchain is in the Rust image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake=3.25.* g++ make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG EDGEWAY_GIT_COMMIT=unknown
ENV EDGEWAY_GIT_COMMIT=${EDGEWAY_GIT_COMMIT} \
    CARGO_TARGET_DIR=/src/target
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile dist -p gateway -p pipeline -p lake --bins \
 && mkdir -p /out \
 && cp target/dist/gateway target/dist/pipeline target/dist/lake /out/

# glibc, libgcc and CA certificates, nothing else (no shell: the pods' preStop is the kubelet's
# own sleep). The binaries link only libc, libm and libgcc_s.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
# The distroless "nonroot" user; deploy/k8s runs as the same uid with a read-only root.
USER 65532:65532
WORKDIR /var/lib/edgeway
# Health is the admin listener's /healthz and /readyz, probed by Kubernetes (deploy/k8s); the
# image has no shell or client to run a Docker HEALTHCHECK with.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["--help"]
