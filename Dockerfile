# branchd in two stages: a Debian build image with the toolchain and the C libraries the build
# links (RocksDB from Debian's static library, as in scripts/setup.sh), and a slim runtime image
# with only the shared libraries the binary still needs and the binary.
#
#   docker build -t branchledger/branchd .
#   docker run --rm branchledger/branchd version
#
# The compose file in config/ runs a 4-node network from `branchd testnet` output.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      clang libclang-dev protobuf-compiler librocksdb-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p branchledger-node --bin branchd \
 && cp target/release/branchd /usr/local/bin/branchd

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libsnappy1v5 libbz2-1.0 zlib1g ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /home/branchd --create-home branchd
COPY --from=build /usr/local/bin/branchd /usr/local/bin/branchd
USER branchd
# A node home is mounted here: config/ (config.toml, genesis.json, keys) and data/.
VOLUME ["/home/branchd/node"]
# p2p, gRPC, metrics (as set in the node's config.toml).
EXPOSE 26656 9090 26660
ENTRYPOINT ["branchd"]
CMD ["start", "--home", "/home/branchd/node"]
