//! Every decoder of bytes that come from outside, with the property each must hold on any
//! input: it returns an error or a value, never panics, and a value it returns re-encodes to
//! exactly the bytes it came from (one value, one encoding). The fuzz targets in `fuzz/` run
//! these on generated inputs; `tests/fuzz_corpus.rs` replays the checked-in corpus in CI.

use branchledger_types::wire::{
    ConsensusGossip, RecordBatch, SyncRequest, SyncResponse, GOSSIP_CONSENSUS_BYTES_MAX,
};
use branchledger_types::{
    limits::BLOCK_BYTES_MAX, Block, CommitCertificate, Genesis, SignedRecord, SignedVote,
};

/// A decoder of untrusted bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoder {
    /// A signed record (API `SubmitSigned`, gossip, blocks).
    SignedRecord,
    /// A block (proposals, sync).
    Block,
    /// A vote.
    SignedVote,
    /// A commit certificate.
    CommitCertificate,
    /// A gossiped record batch.
    RecordBatch,
    /// A gossiped consensus message.
    ConsensusGossip,
    /// A block-sync request.
    SyncRequest,
    /// A block-sync response.
    SyncResponse,
    /// A chain export file, verified against a fixed genesis.
    Export,
    /// An inclusion proof (JSON), checked against a fixed genesis.
    Proof,
    /// A genesis document (JSON).
    Genesis,
}

impl Decoder {
    /// Every decoder.
    pub const ALL: &'static [Decoder] = &[
        Decoder::SignedRecord,
        Decoder::Block,
        Decoder::SignedVote,
        Decoder::CommitCertificate,
        Decoder::RecordBatch,
        Decoder::ConsensusGossip,
        Decoder::SyncRequest,
        Decoder::SyncResponse,
        Decoder::Export,
        Decoder::Proof,
        Decoder::Genesis,
    ];

    /// The fuzz target's name (and the corpus directory's).
    pub fn name(self) -> &'static str {
        match self {
            Decoder::SignedRecord => "signed_record",
            Decoder::Block => "block",
            Decoder::SignedVote => "signed_vote",
            Decoder::CommitCertificate => "commit_certificate",
            Decoder::RecordBatch => "record_batch",
            Decoder::ConsensusGossip => "consensus_gossip",
            Decoder::SyncRequest => "sync_request",
            Decoder::SyncResponse => "sync_response",
            Decoder::Export => "export",
            Decoder::Proof => "proof",
            Decoder::Genesis => "genesis",
        }
    }

    /// Decodes `data` and checks the property; panics (a fuzzer finding) if it fails.
    pub fn check(self, data: &[u8]) {
        match self {
            Decoder::SignedRecord => {
                if let Ok(record) = SignedRecord::from_bytes(data) {
                    assert_eq!(
                        record.to_bytes(),
                        data,
                        "signed record re-encodes differently"
                    );
                    let _ = record.validate();
                }
            }
            Decoder::Block => {
                if let Ok(block) = Block::from_bytes(data, BLOCK_BYTES_MAX) {
                    assert_eq!(block.to_bytes(), data, "block re-encodes differently");
                    let _ = block.compute_records_root();
                }
            }
            Decoder::SignedVote => {
                if let Ok(vote) = SignedVote::from_bytes(data) {
                    assert_eq!(vote.to_bytes(), data, "vote re-encodes differently");
                }
            }
            Decoder::CommitCertificate => {
                if let Ok(commit) = CommitCertificate::from_bytes(data) {
                    assert_eq!(
                        commit.to_bytes(),
                        data,
                        "certificate re-encodes differently"
                    );
                }
            }
            Decoder::RecordBatch => {
                if let Ok(batch) = RecordBatch::from_bytes(data) {
                    assert_eq!(
                        batch.to_bytes(),
                        data,
                        "record batch re-encodes differently"
                    );
                }
            }
            Decoder::ConsensusGossip => {
                if let Ok(gossip) = ConsensusGossip::from_bytes(data, GOSSIP_CONSENSUS_BYTES_MAX) {
                    assert_eq!(
                        gossip.to_bytes(),
                        data,
                        "consensus gossip re-encodes differently"
                    );
                }
            }
            Decoder::SyncRequest => {
                if let Ok(request) = SyncRequest::from_bytes(data) {
                    assert_eq!(
                        request.to_bytes(),
                        data,
                        "sync request re-encodes differently"
                    );
                }
            }
            Decoder::SyncResponse => {
                if let Ok(response) = SyncResponse::from_bytes(data) {
                    assert_eq!(
                        response.to_bytes(),
                        data,
                        "sync response re-encodes differently"
                    );
                }
            }
            Decoder::Export => {
                let _ = crate::export::verify_export(fixed_genesis(), &mut &data[..]);
            }
            Decoder::Proof => {
                if let Ok(text) = std::str::from_utf8(data) {
                    if let Ok(proof) = serde_json::from_str::<crate::proof::RecordProof>(text) {
                        let _ = crate::proof::check(fixed_genesis(), &proof);
                    }
                }
            }
            Decoder::Genesis => {
                if let Ok(text) = std::str::from_utf8(data) {
                    let _ = Genesis::from_json(text);
                }
            }
        }
    }
}

/// The example genesis of `config/`, against which exports and proofs are checked.
fn fixed_genesis() -> &'static Genesis {
    static GENESIS: std::sync::OnceLock<Genesis> = std::sync::OnceLock::new();
    GENESIS.get_or_init(|| {
        Genesis::from_json(include_str!("../../../config/genesis.example.json"))
            .expect("the example genesis is valid")
    })
}
