# Bindery's container image. Multi-stage: `build` compiles in a Rust image;
# `runtime` is a slim Debian with OpenSSL and CA certificates, the binary,
# and a non-root user. `prebuilt` packages a binary built outside
# (`--target prebuilt --build-arg BINARY=…`), as the tests do where no
# public image can be pulled (they pass BASE=, a Debian made by debootstrap).
#
#   docker build -t bindery .                                   # compile inside
#   docker build --target prebuilt --build-arg BINARY=target/dist/bindery -t bindery .
ARG BASE=debian:bookworm-slim
ARG BUILDER=rust:1.95-bookworm

FROM ${BASE} AS runtime-base
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/* \
 && groupadd --gid 10001 bindery \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/bindery --shell /usr/sbin/nologin bindery \
 && install -d -o 10001 -g 10001 /var/lib/bindery
USER 10001:10001
WORKDIR /var/lib/bindery
EXPOSE 8585
ENTRYPOINT ["/usr/local/bin/bindery"]
CMD ["serve", "--listen", "0.0.0.0:8585", "--data-dir", "/var/lib/bindery"]

FROM runtime-base AS prebuilt
ARG BINARY=target/dist/bindery
COPY ${BINARY} /usr/local/bin/bindery

FROM ${BUILDER} AS build
WORKDIR /src
COPY . .
RUN rustup target add wasm32-wasip2 \
 && cargo build --profile dist --locked -p bindery \
 && strip target/dist/bindery

FROM runtime-base AS runtime
COPY --from=build /src/target/dist/bindery /usr/local/bin/bindery
