# syntax=docker/dockerfile:1
#
# prefix-operator as a static binary on distroless:
#
#   docker build -t prefix-operator:0.1.0 .
#
# The builder links against musl (x86_64-unknown-linux-musl), so the final
# image needs no libc: it holds the binary, CA certificates and a passwd entry
# for the nonroot user (65532). `make static-build` builds the same binary
# without a container engine.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
ARG TARGET=x86_64-unknown-linux-musl
# ring compiles C and assembly: it needs a C compiler for musl.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${TARGET}"
ENV CC_x86_64_unknown_linux_musl=musl-gcc
WORKDIR /src
COPY . .
# The caches keep the registry and the build directory between builds; the
# binary is copied out of the cache mount into the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target "${TARGET}" --bin prefix-operator \
 && install -D -m 0755 "target/${TARGET}/release/prefix-operator" /out/prefix-operator \
 && /out/prefix-operator --version

FROM gcr.io/distroless/static:nonroot
LABEL org.opencontainers.image.title="prefix-operator" \
      org.opencontainers.image.description="Gives every Kubernetes node a routable pod prefix carved from PrefixPools" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/prefix-operator /prefix-operator
USER 65532:65532
EXPOSE 10262
ENTRYPOINT ["/prefix-operator"]
CMD ["run"]
