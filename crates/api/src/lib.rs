//! The gRPC contract of `proto/branchledger/v1` (DESIGN.md §7): the generated types and
//! service stubs, the checking conversions between them and the canonical domain types, and
//! the operator-credential check.
//!
//! Protobuf is for the API only: an incoming message is converted into a domain type by
//! [`convert`] before anything else happens to it, and the conversion names the field and the
//! rule of the first thing wrong. API messages are never hashed or signed.
//!
//! The services themselves are implemented by the node, which owns the state they read.

pub mod auth;
pub mod convert;

/// The generated protobuf types and service stubs of `branchledger.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("branchledger.v1");

    /// The encoded descriptor set of every file, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("branchledger_descriptor");
}
