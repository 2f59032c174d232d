//! With `ROCKSDB_STATIC` set (`.cargo/config.toml`), RocksDB is linked from Debian's static
//! `librocksdb.a`, which leaves its compression libraries to the final link: zlib and bzip2
//! here (snappy, lz4 and zstd come with `librocksdb-sys`). See docs/adr/0002-storage.md.

fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_STATIC");
    if std::env::var_os("ROCKSDB_STATIC").is_some() {
        println!("cargo:rustc-link-lib=dylib=z");
        println!("cargo:rustc-link-lib=dylib=bz2");
    }
}
