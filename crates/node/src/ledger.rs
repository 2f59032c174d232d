//! The node's view of the chain: building a block as proposer, checking a proposed block as
//! validator, committing a decided block, and applying a block fetched by block sync.
//!
//! Every path ends in the same place: the state rules give the block's delta and digest, and
//! the store writes block, certificate, records and delta in one synced batch. Checks are the
//! pure ones of `branchledger-verifier` and `branchledger-state`; this module only decides what
//! to check when and feeds the results to the store.

use std::sync::Arc;

use branchledger_crypto::Hash;
use branchledger_state::{apply_block_with_ids, ApplyError, BlockError, BlockExecutor, StateDelta};
use branchledger_storage::{ChainReader, ChainWriter, RocksStore, StorageError, Tip};
use branchledger_types::{
    encoded_len, merkle, Block, BlockHeader, CommitCertificate, CommittedBlock, Genesis, Height,
    Round, SignedRecord, ValidatorIndex, ValidatorSet,
};
use branchledger_verifier::VerificationError;

/// A committed block's store write (the synced RocksDB batch) at least this long is logged as
/// a warning with its duration.
pub const SLOW_COMMIT_WRITE: std::time::Duration = std::time::Duration::from_millis(200);

/// Why a block was not accepted or could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A pure check failed.
    #[error("block {height}: {error}")]
    Invalid {
        /// Height of the block.
        height: Height,
        /// The rule broken.
        error: VerificationError,
    },
    /// A record broke a state rule, or the state digest differs.
    #[error("block {height}: {reason}")]
    State {
        /// Height of the block.
        height: Height,
        /// What is wrong.
        reason: String,
    },
    /// The store failed or is corrupt.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A block built by the proposer, with what committing it will write.
pub struct BuiltBlock {
    /// The block.
    pub block: Block,
    /// The state delta it makes.
    pub delta: StateDelta,
    /// The ids of its records, in order.
    pub ids: Vec<Hash>,
    /// Candidates the state rules refused, with the reasons.
    pub refused: Vec<(Hash, String)>,
}

/// The chain as one node holds it.
#[derive(Clone)]
pub struct Ledger {
    genesis: Arc<Genesis>,
    validators: ValidatorSet,
    store: Arc<RocksStore>,
}

impl Ledger {
    /// A ledger over `store` for the chain of `genesis`.
    pub fn new(genesis: Arc<Genesis>, store: Arc<RocksStore>) -> Ledger {
        let validators = genesis.validator_set();
        Ledger {
            genesis,
            validators,
            store,
        }
    }

    /// The genesis document.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The validator set.
    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    /// The store.
    pub fn store(&self) -> &Arc<RocksStore> {
        &self.store
    }

    /// The last committed block, if any.
    pub fn tip(&self) -> Result<Option<Tip>, LedgerError> {
        Ok(self.store.tip()?)
    }

    /// The height being decided next.
    pub fn next_height(&self) -> Result<Height, LedgerError> {
        Ok(self.tip()?.map_or(1, |t| t.height + 1))
    }

    fn tip_header(&self) -> Result<Option<BlockHeader>, LedgerError> {
        match self.tip()? {
            Some(tip) => Ok(self.store.header(tip.height)?),
            None => Ok(None),
        }
    }

    /// The time a new block may carry: `now_ms`, but strictly after the previous block (or
    /// genesis).
    pub fn block_time(&self, now_ms: u64) -> Result<u64, LedgerError> {
        let previous = self
            .tip_header()?
            .map_or(self.genesis.genesis_time_ms, |h| h.time_ms);
        Ok(now_ms.max(previous + 1))
    }

    /// Builds the next block from `candidates` (in order), keeping those that pass the state
    /// rules, within the genesis limits on records and bytes.
    pub fn build_block(
        &self,
        candidates: &[SignedRecord],
        now_ms: u64,
        proposer_index: ValidatorIndex,
    ) -> Result<BuiltBlock, LedgerError> {
        let tip = self.tip()?;
        let height = tip.as_ref().map_or(1, |t| t.height + 1);
        let time_ms = self.block_time(now_ms)?;
        let params = &self.genesis.consensus;
        // Room for the header and length prefixes.
        let bytes_max = (params.max_block_bytes as usize).saturating_sub(4096);
        let mut executor = BlockExecutor::new(self.store.as_ref(), &self.genesis, height, time_ms);
        let mut records = Vec::new();
        let mut ids = Vec::new();
        let mut refused = Vec::new();
        let mut bytes = 0;
        for record in candidates {
            if records.len() >= params.max_block_records as usize {
                break;
            }
            let size = encoded_len(record);
            if bytes + size > bytes_max {
                break;
            }
            let id = record.id();
            match executor.apply_with_id(record, id) {
                Ok(_) => {
                    bytes += size;
                    records.push(record.clone());
                    ids.push(id);
                }
                Err(ApplyError::Rejected(reason)) => refused.push((id, reason.to_string())),
                Err(ApplyError::Read(error)) => {
                    return Err(LedgerError::State {
                        height,
                        reason: error.to_string(),
                    })
                }
            }
        }
        let previous_digest = tip.as_ref().map_or(Hash::ZERO, |t| t.state_digest);
        let (delta, state_digest) = executor.finish(&previous_digest);
        let header = BlockHeader {
            chain_id: self.genesis.chain_id.clone(),
            height,
            time_ms,
            prev_block_id: tip.as_ref().map_or(Hash::ZERO, |t| t.block_id),
            records_root: merkle::root(&ids),
            record_count: records.len() as u32,
            state_digest,
            proposer_index,
            validator_set_id: self.validators.id(),
        };
        Ok(BuiltBlock {
            block: Block { header, records },
            delta,
            ids,
            refused,
        })
    }

    /// Checks a block proposed in `round` before prevoting it: header link, proposer, time not
    /// beyond `now_ms` plus the allowed drift, size, records root, the records' rules and
    /// signatures (skipping those `is_verified` says were verified already), and that applying
    /// the records gives the header's state digest. Returns the delta to write if it is
    /// decided, and the record ids.
    pub fn check_proposed(
        &self,
        block: &Block,
        round: Round,
        now_ms: u64,
        is_verified: impl Fn(&SignedRecord, &Hash) -> bool,
    ) -> Result<(StateDelta, Vec<Hash>), LedgerError> {
        let header = &block.header;
        let height = header.height;
        let invalid = |error| LedgerError::Invalid { height, error };
        let prev = self.tip_header()?;
        branchledger_verifier::check_header_link(prev.as_ref(), header, &self.genesis)
            .map_err(invalid)?;
        branchledger_verifier::check_proposer(&self.validators, header, round).map_err(invalid)?;
        branchledger_verifier::check_time_not_future(
            header,
            now_ms,
            self.genesis.consensus.max_clock_drift_ms,
        )
        .map_err(invalid)?;
        branchledger_verifier::check_block_size(block, &self.genesis.consensus).map_err(invalid)?;
        let ids = branchledger_verifier::checked_record_ids(block).map_err(invalid)?;
        let unverified: Vec<SignedRecord> = block
            .records
            .iter()
            .zip(&ids)
            .filter(|(r, id)| !is_verified(r, id))
            .map(|(r, _)| r.clone())
            .collect();
        branchledger_verifier::check_records(&self.genesis, &unverified)
            .map_err(|error| invalid(VerificationError::BadRecords { height, error }))?;
        let delta = self.apply_records_with_ids(block, &ids)?;
        Ok((delta, ids))
    }

    /// Applies a block's records to the committed state and checks the digest; returns the
    /// delta and the record ids.
    pub fn state_delta(&self, block: &Block) -> Result<(StateDelta, Vec<Hash>), LedgerError> {
        let ids: Vec<Hash> = block.records.iter().map(SignedRecord::id).collect();
        let delta = self.apply_records_with_ids(block, &ids)?;
        Ok((delta, ids))
    }

    /// `ids` are the block's record ids, in order.
    fn apply_records_with_ids(
        &self,
        block: &Block,
        ids: &[Hash],
    ) -> Result<StateDelta, LedgerError> {
        let header = &block.header;
        let previous_digest = self.tip()?.map_or(Hash::ZERO, |t| t.state_digest);
        let (delta, digest) = apply_block_with_ids(
            self.store.as_ref(),
            &self.genesis,
            header.height,
            header.time_ms,
            &block.records,
            ids,
            &previous_digest,
        )
        .map_err(|error| match error {
            BlockError::Rejected(rejection) => LedgerError::State {
                height: header.height,
                reason: rejection.to_string(),
            },
            // This node's own store failed: nothing is known about the block, and the fault
            // is not its sender's.
            BlockError::Read(error) => LedgerError::Storage(StorageError::Backend(format!(
                "reading state to apply block {}: {error}",
                header.height
            ))),
        })?;
        if digest != header.state_digest {
            return Err(LedgerError::State {
                height: header.height,
                reason: format!(
                    "state digest {} differs from the header's {}",
                    digest, header.state_digest
                ),
            });
        }
        Ok(delta)
    }

    /// Stores a decided block with its certificate, after checking the certificate. `ids` are
    /// the block's record ids, as [`Ledger::check_proposed`] or [`Ledger::build_block`] gave
    /// them.
    pub fn commit(
        &self,
        block: Block,
        certificate: CommitCertificate,
        delta: &StateDelta,
        ids: &[Hash],
    ) -> Result<Tip, LedgerError> {
        let height = block.header.height;
        branchledger_verifier::verify_commit(
            &self.validators,
            &self.genesis.chain_id,
            &block.header,
            &certificate,
        )
        .map_err(|error| LedgerError::Invalid { height, error })?;
        let committed = CommittedBlock {
            block,
            commit: certificate,
        };
        let started = std::time::Instant::now();
        let tip = self.store.commit_block_with_ids(&committed, delta, ids)?;
        let took = started.elapsed();
        if took >= SLOW_COMMIT_WRITE {
            // Every vote of the next height waits for this write: an operator seeing heights
            // slow down needs to know that the disk, not consensus, held them up.
            tracing::warn!(
                height,
                records = committed.block.records.len(),
                ms = took.as_millis() as u64,
                "slow block write"
            );
        }
        Ok(tip)
    }

    /// Verifies a block fetched by block sync (everything: link, proposer, certificate, size,
    /// root, records, state digest) and stores it.
    pub fn apply_synced(&self, committed: CommittedBlock) -> Result<Tip, LedgerError> {
        let height = committed.block.header.height;
        let prev = self.tip_header()?;
        let ids = branchledger_verifier::verify_committed_block_ids(
            &self.genesis,
            prev.as_ref(),
            &committed,
        )
        .map_err(|error| LedgerError::Invalid { height, error })?;
        let delta = self.apply_records_with_ids(&committed.block, &ids)?;
        Ok(self.store.commit_block_with_ids(&committed, &delta, &ids)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use branchledger_crypto::{Keypair, Signer};
    use branchledger_types::genesis::{
        peer_id_of, Branch, ConsensusParams, Rules, StudyRule, Validator,
    };
    use branchledger_types::record::{MemberJoined, MemberStatus, StudyForm, StudySession};
    use branchledger_types::{
        BranchId, CommitSignature, Date, MemberId, Record, RecordBody, Vote, VoteKind,
    };

    const T0: u64 = 1_767_225_600_000; // 2026-01-01

    struct Net {
        genesis: Arc<Genesis>,
        validator_keys: Vec<Keypair>,
        branch_key: Keypair,
    }

    fn net() -> Net {
        let validator_keys: Vec<Keypair> =
            (0..4).map(|i| Keypair::from_seed([10 + i; 32])).collect();
        let branch_key = Keypair::from_seed([1; 32]);
        let genesis = Genesis {
            chain_id: "ledger-test".into(),
            genesis_time_ms: T0,
            validators: validator_keys
                .iter()
                .enumerate()
                .map(|(i, k)| Validator {
                    name: format!("v{i}"),
                    branch_id: BranchId("b0".into()),
                    consensus_key: k.public_key(),
                    peer_id: peer_id_of(&Keypair::from_seed([20 + i as u8; 32]).public_key()),
                })
                .collect(),
            branches: vec![Branch {
                branch_id: BranchId("b0".into()),
                name: "B0".into(),
                signing_key: branch_key.public_key(),
            }],
            consensus: ConsensusParams::default(),
            rules: Rules {
                meetings: vec![],
                study: StudyRule {
                    minutes_per_member_per_month: 60,
                },
                dues_minor_per_month: 0,
            },
        };
        Net {
            genesis: Arc::new(genesis),
            validator_keys,
            branch_key,
        }
    }

    fn ledger(net: &Net) -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(RocksStore::open(dir.path()).expect("open store"));
        (dir, Ledger::new(net.genesis.clone(), store))
    }

    fn records(net: &Net) -> Vec<SignedRecord> {
        let record = |nonce, body| {
            Record {
                chain_id: "ledger-test".into(),
                branch_id: BranchId("b0".into()),
                created_at_ms: T0,
                nonce,
                body,
            }
            .sign(&net.branch_key)
        };
        vec![
            record(
                1,
                RecordBody::MemberJoined(MemberJoined {
                    member_id: MemberId("m1".into()),
                    joined_on: Date::new(2025, 12, 1),
                    status: MemberStatus::Full,
                    mobile: false,
                    member_key: None,
                }),
            ),
            record(
                2,
                RecordBody::StudySession(StudySession {
                    member_id: MemberId("m1".into()),
                    material: "handbook".into(),
                    minutes: 45,
                    form: StudyForm::Group,
                    occurred_on: Date::new(2025, 12, 3),
                }),
            ),
            // Refused: no such member.
            record(
                3,
                RecordBody::StudySession(StudySession {
                    member_id: MemberId("m9".into()),
                    material: "handbook".into(),
                    minutes: 45,
                    form: StudyForm::Group,
                    occurred_on: Date::new(2025, 12, 3),
                }),
            ),
        ]
    }

    fn certify(net: &Net, block: &Block, signers: &[usize]) -> CommitCertificate {
        let block_id = block.id();
        let signatures = signers
            .iter()
            .map(|&i| {
                let vote = Vote {
                    height: block.header.height,
                    round: 0,
                    kind: VoteKind::Precommit,
                    block_id: Some(block_id),
                    validator_index: i as u16,
                };
                CommitSignature {
                    validator_index: i as u16,
                    signature: net.validator_keys[i].sign(&vote.signing_message("ledger-test")),
                }
            })
            .collect();
        CommitCertificate {
            height: block.header.height,
            round: 0,
            block_id,
            signatures,
        }
    }

    #[test]
    fn proposer_builds_validators_accept_and_sync_replays_identically() {
        let net = net();
        let (_a_dir, a) = ledger(&net);
        let (_b_dir, b) = ledger(&net);
        let proposer = a.validators().proposer(1, 0);
        let built = a
            .build_block(&records(&net), T0 + 1_000, proposer)
            .expect("build");
        assert_eq!(built.block.records.len(), 2);
        assert_eq!(built.refused.len(), 1);
        assert!(built.refused[0].1.contains("m9"), "{:?}", built.refused);
        // Another validator checks the proposal against its own (equal) state.
        let (delta, ids) = b
            .check_proposed(&built.block, 0, T0 + 1_000, |_, _| false)
            .expect("valid proposal");
        assert_eq!(delta, built.delta);
        assert_eq!(ids, built.ids);
        // Too few signatures: refused; a quorum: stored.
        let weak = certify(&net, &built.block, &[0, 1]);
        assert!(matches!(
            a.commit(built.block.clone(), weak, &built.delta, &built.ids),
            Err(LedgerError::Invalid { .. })
        ));
        let tip = a
            .commit(
                built.block.clone(),
                certify(&net, &built.block, &[0, 1, 3]),
                &built.delta,
                &built.ids,
            )
            .expect("commit");
        assert_eq!(tip.height, 1);
        // Block sync: b fetches the committed block and replays it to the same tip.
        let committed = a
            .store()
            .committed_block(1)
            .expect("read")
            .expect("present");
        assert_eq!(b.apply_synced(committed).expect("sync"), tip);
        assert_eq!(b.next_height().expect("tip"), 2);
    }

    #[test]
    fn bad_proposals_are_refused_with_the_rule_broken() {
        let net = net();
        let (_dir, a) = ledger(&net);
        let built = a.build_block(&records(&net), T0 + 1_000, 1).expect("build");
        // A state digest that does not match the records.
        let mut block = built.block.clone();
        block.header.state_digest = Hash::ZERO;
        let error = a
            .check_proposed(&block, 0, T0 + 1_000, |_, _| false)
            .expect_err("digest");
        assert!(error.to_string().contains("state digest"), "{error}");
        // A block from the future.
        let drift = net.genesis.consensus.max_clock_drift_ms;
        let error = a
            .check_proposed(&built.block, 0, T0 + 1_000 - drift - 1, |_, _| false)
            .expect_err("future");
        assert!(
            matches!(
                error,
                LedgerError::Invalid {
                    error: VerificationError::TimeInFuture { .. },
                    ..
                }
            ),
            "{error}"
        );
        // A record whose signature is bad (re-rooted so only the signature is wrong).
        let mut block = built.block.clone();
        block.records[1].signature.0[0] ^= 1;
        let error = a
            .check_proposed(&block, 0, T0 + 1_000, |_, _| false)
            .expect_err("signature");
        assert!(
            matches!(
                error,
                LedgerError::Invalid {
                    error: VerificationError::BadRecords { .. },
                    ..
                }
            ),
            "{error}"
        );
        // ...which a node skips only for records it verified itself.
        let verified_ids: Vec<Hash> = built.block.records.iter().map(SignedRecord::id).collect();
        assert!(a
            .check_proposed(&built.block, 0, T0 + 1_000, |_, id| verified_ids
                .contains(id))
            .is_ok());
        // A wrong proposer for round 0 at height 1.
        let mut block = built.block.clone();
        block.header.proposer_index = 3;
        assert!(a
            .check_proposed(&block, 0, T0 + 1_000, |_, _| false)
            .is_err());
    }

    #[test]
    fn sync_refuses_a_block_without_a_valid_certificate() {
        let net = net();
        let (_a_dir, a) = ledger(&net);
        let (_b_dir, b) = ledger(&net);
        let built = a.build_block(&records(&net), T0 + 1_000, 1).expect("build");
        let certificate = certify(&net, &built.block, &[0, 1, 2]);
        let mut forged = CommittedBlock {
            block: built.block.clone(),
            commit: certificate.clone(),
        };
        forged.commit.signatures.truncate(2);
        assert!(matches!(
            b.apply_synced(forged),
            Err(LedgerError::Invalid { .. })
        ));
        let mut duplicated = CommittedBlock {
            block: built.block.clone(),
            commit: certificate,
        };
        duplicated.commit.signatures[2] = duplicated.commit.signatures[1];
        assert!(matches!(
            b.apply_synced(duplicated),
            Err(LedgerError::Invalid { .. })
        ));
        assert_eq!(b.tip().expect("tip"), None);
    }
}
