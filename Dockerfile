# syntax=docker/dockerfile:1
# One Dockerfile for the openefs images; BIN picks the binary:
#   docker build --build-arg BIN=openefs-nfsd      -t <registry>/openefs-nfsd:<tag> .
#   docker build --build-arg BIN=openefs-operator  -t <registry>/openefs-operator:<tag> .
#   docker build --build-arg BIN=openefs-csi       -t <registry>/openefs-csi:<tag> .
#   docker build --build-arg BIN=openefs-kms-plugin -t <registry>/openefs-kms-plugin:<tag> .   (the reference KMS v2 plugin)
# Multi-stage: the workspace is compiled in the Rust image, and only the
# binary goes into a distroless base (glibc, CA certificates, no shell).
# The base runs as root because nfsd and the CSI node plugin must; the chart
# runs the operator and the CSI controller as uid 65532 with no capabilities
# (docs/install.md, "Images").

FROM docker.io/library/rust:1-bookworm AS build
ARG BIN=openefs-nfsd
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin "$BIN" \
    && cp "target/release/$BIN" /app

FROM gcr.io/distroless/cc-debian12:latest
ARG BIN=openefs-nfsd
COPY --from=build /app /usr/local/bin/$BIN
# Exec form cannot expand ARG, so the binary is also linked to a fixed name.
COPY --from=build /app /usr/local/bin/entrypoint
ENTRYPOINT ["/usr/local/bin/entrypoint"]
