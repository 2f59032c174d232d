#!/usr/bin/env bash
# Installs what the build needs when it is missing: clang and libclang-dev (bindgen for the
# RocksDB bindings), protobuf-compiler (tonic's code generation) and Debian's librocksdb-dev,
# which the storage crate links instead of compiling RocksDB from C++ (docs/adr/0002-storage.md).
# Safe to run repeatedly; does nothing when everything is present.
set -euo pipefail

need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
dpkg -s librocksdb-dev >/dev/null 2>&1 || need+=(librocksdb-dev)

if [ "${#need[@]}" -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    sudo_cmd=""
    if [ "$(id -u)" != "0" ]; then sudo_cmd="sudo"; fi
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2
    exit 1
fi
