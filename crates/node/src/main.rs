//! branchd
fn main() {}
