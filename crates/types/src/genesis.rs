//! The genesis document: the chain id, validators, branches and their keys, consensus
//! parameters and the meeting and study rules. Everything an auditor needs to trust.

use std::collections::BTreeSet;

use borsh::{BorshDeserialize, BorshSerialize};
use branchledger_crypto::{check_registered_key, hash_tagged, Domain, Hash, PublicKey};
use serde::{Deserialize, Serialize};

use crate::block::{Height, Round, ValidatorIndex};
use crate::codec::encode;
use crate::ids::{check_ident, BranchId};
use crate::limits::{
    BLOCK_BYTES_MAX, BLOCK_RECORDS_MAX, BRANCHES_MAX, GENESIS_BYTES_MAX, VALIDATORS_MAX,
};
use crate::record::MeetingKind;

/// A validator: a node that takes part in consensus.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validator {
    /// A human name for logs and status.
    pub name: String,
    /// The branch that runs it.
    pub branch_id: BranchId,
    /// The key that signs its proposals and votes.
    pub consensus_key: PublicKey,
    /// Its libp2p peer id (base58, from its node key); only listed peers may connect.
    pub peer_id: String,
}

/// A branch and the key that signs its records.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branch {
    /// The branch id.
    pub branch_id: BranchId,
    /// A display name.
    pub name: String,
    /// The key that signs the branch's records.
    pub signing_key: PublicKey,
}

/// Timeouts and block limits.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusParams {
    /// Propose timeout in round 0.
    pub timeout_propose_ms: u64,
    /// Prevote timeout in round 0.
    pub timeout_prevote_ms: u64,
    /// Precommit timeout in round 0.
    pub timeout_precommit_ms: u64,
    /// Added to each timeout per round, so timeouts grow until the network is synchronous.
    pub timeout_increase_ms: u64,
    /// Most records in a block.
    pub max_block_records: u32,
    /// Most bytes in an encoded block.
    pub max_block_bytes: u32,
    /// With no records pending, a block is still made after this long (0: never).
    pub heartbeat_ms: u64,
    /// How far ahead of a validator's clock a block's time may be.
    pub max_clock_drift_ms: u64,
}

impl Default for ConsensusParams {
    fn default() -> Self {
        ConsensusParams {
            timeout_propose_ms: 1_000,
            timeout_prevote_ms: 500,
            timeout_precommit_ms: 500,
            timeout_increase_ms: 500,
            max_block_records: 5_000,
            max_block_bytes: 4 * 1024 * 1024,
            heartbeat_ms: 0,
            max_clock_drift_ms: 2_000,
        }
    }
}

/// The span a meeting rule counts over.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[borsh(use_discriminant = false)]
#[serde(rename_all = "snake_case")]
pub enum RulePeriod {
    /// Each calendar month.
    Month,
    /// Each calendar quarter.
    Quarter,
    /// Each calendar year.
    Year,
}

/// "At least `at_least` meetings of `kind` every `per`."
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeetingRule {
    /// The meeting kind.
    pub kind: MeetingKind,
    /// How many at least.
    pub at_least: u32,
    /// Per what span.
    pub per: RulePeriod,
}

/// The study target per member.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyRule {
    /// Minutes each active member should study per month.
    pub minutes_per_member_per_month: u32,
}

/// The periodic rules the progress queries report against (三会一课 and study targets).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Meeting rules.
    pub meetings: Vec<MeetingRule>,
    /// Study rule.
    pub study: StudyRule,
    /// Monthly dues expected of each active member, in minor units (0: no expectation).
    pub dues_minor_per_month: u64,
}

/// The genesis document.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// The chain id (identifier pattern).
    pub chain_id: String,
    /// Genesis time, Unix milliseconds; the first block's time must be later.
    pub genesis_time_ms: u64,
    /// Validators, in proposer order.
    pub validators: Vec<Validator>,
    /// Branches.
    pub branches: Vec<Branch>,
    /// Consensus parameters.
    pub consensus: ConsensusParams,
    /// Meeting and study rules.
    pub rules: Rules,
}

/// A genesis document that does not hold together. Each names the place and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// Not valid JSON, or a field of the wrong type, or an unknown field.
    #[error("genesis is not a valid document: {0}")]
    Parse(String),
    /// Larger than [`GENESIS_BYTES_MAX`].
    #[error("genesis is {0} bytes, more than the limit of {GENESIS_BYTES_MAX}")]
    TooLarge(usize),
    /// A field breaks a rule.
    #[error("genesis field `{field}`: {reason}")]
    Invalid {
        /// Path of the field.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> GenesisError {
    GenesisError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Genesis {
    /// Parses and validates a genesis document from JSON.
    pub fn from_json(text: &str) -> Result<Genesis, GenesisError> {
        if text.len() > GENESIS_BYTES_MAX {
            return Err(GenesisError::TooLarge(text.len()));
        }
        let genesis: Genesis =
            serde_json::from_str(text).map_err(|e| GenesisError::Parse(e.to_string()))?;
        genesis.validate()?;
        Ok(genesis)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("genesis serialises to JSON")
    }

    /// The genesis hash, over its canonical encoding (not the JSON text, so formatting does
    /// not matter).
    pub fn hash(&self) -> Hash {
        hash_tagged(Domain::Genesis, &[&encode(self)])
    }

    /// The validator set.
    pub fn validator_set(&self) -> ValidatorSet {
        ValidatorSet::new(self.validators.clone())
    }

    /// The branch with this id.
    pub fn branch(&self, branch_id: &BranchId) -> Option<&Branch> {
        self.branches.iter().find(|b| &b.branch_id == branch_id)
    }

    /// Checks every rule: identifiers, keys (on the curve, canonical, not small order),
    /// uniqueness, references to branches, peer ids, limits and timeouts.
    pub fn validate(&self) -> Result<(), GenesisError> {
        check_ident("chain_id", &self.chain_id)
            .map_err(|e| invalid("chain_id", e.rule.to_string()))?;
        if self.validators.is_empty() {
            return Err(invalid("validators", "at least one validator is required"));
        }
        if self.validators.len() > VALIDATORS_MAX {
            return Err(invalid(
                "validators",
                format!("at most {VALIDATORS_MAX} validators"),
            ));
        }
        if self.branches.is_empty() || self.branches.len() > BRANCHES_MAX {
            return Err(invalid(
                "branches",
                format!("1..={BRANCHES_MAX} branches required"),
            ));
        }
        let mut keys = BTreeSet::new();
        let mut branch_ids = BTreeSet::new();
        for (i, branch) in self.branches.iter().enumerate() {
            let field = format!("branches[{i}]");
            branch
                .branch_id
                .validate("branch_id")
                .map_err(|e| invalid(format!("{field}.branch_id"), e.rule.to_string()))?;
            if !branch_ids.insert(&branch.branch_id) {
                return Err(invalid(
                    format!("{field}.branch_id"),
                    format!("duplicate branch {}", branch.branch_id),
                ));
            }
            check_registered_key(&branch.signing_key)
                .map_err(|e| invalid(format!("{field}.signing_key"), e.to_string()))?;
            if !keys.insert(branch.signing_key) {
                return Err(invalid(format!("{field}.signing_key"), "duplicate key"));
            }
        }
        let mut names = BTreeSet::new();
        let mut peers = BTreeSet::new();
        for (i, validator) in self.validators.iter().enumerate() {
            let field = format!("validators[{i}]");
            if validator.name.is_empty() || validator.name.len() > 64 {
                return Err(invalid(format!("{field}.name"), "1..=64 bytes required"));
            }
            if !names.insert(&validator.name) {
                return Err(invalid(
                    format!("{field}.name"),
                    format!("duplicate name {}", validator.name),
                ));
            }
            if !branch_ids.contains(&validator.branch_id) {
                return Err(invalid(
                    format!("{field}.branch_id"),
                    format!("unknown branch {}", validator.branch_id),
                ));
            }
            check_registered_key(&validator.consensus_key)
                .map_err(|e| invalid(format!("{field}.consensus_key"), e.to_string()))?;
            if !keys.insert(validator.consensus_key) {
                return Err(invalid(format!("{field}.consensus_key"), "duplicate key"));
            }
            let node_key = peer_id_ed25519_key(&validator.peer_id)
                .map_err(|reason| invalid(format!("{field}.peer_id"), reason))?;
            check_registered_key(&node_key)
                .map_err(|e| invalid(format!("{field}.peer_id"), format!("node key: {e}")))?;
            if !peers.insert(&validator.peer_id) {
                return Err(invalid(format!("{field}.peer_id"), "duplicate peer id"));
            }
        }
        let c = &self.consensus;
        for (name, value) in [
            ("timeout_propose_ms", c.timeout_propose_ms),
            ("timeout_prevote_ms", c.timeout_prevote_ms),
            ("timeout_precommit_ms", c.timeout_precommit_ms),
        ] {
            if !(10..=600_000).contains(&value) {
                return Err(invalid(
                    format!("consensus.{name}"),
                    "must be in 10..=600000 ms",
                ));
            }
        }
        if c.timeout_increase_ms > 600_000 {
            return Err(invalid(
                "consensus.timeout_increase_ms",
                "must be at most 600000 ms",
            ));
        }
        if c.max_block_records == 0 || c.max_block_records as usize > BLOCK_RECORDS_MAX {
            return Err(invalid(
                "consensus.max_block_records",
                format!("must be in 1..={BLOCK_RECORDS_MAX}"),
            ));
        }
        if (c.max_block_bytes as usize) < crate::limits::RECORD_BYTES_MAX * 2
            || c.max_block_bytes as usize > BLOCK_BYTES_MAX
        {
            return Err(invalid(
                "consensus.max_block_bytes",
                format!(
                    "must be in {}..={BLOCK_BYTES_MAX}",
                    crate::limits::RECORD_BYTES_MAX * 2
                ),
            ));
        }
        if c.max_clock_drift_ms == 0 || c.max_clock_drift_ms > 3_600_000 {
            return Err(invalid(
                "consensus.max_clock_drift_ms",
                "must be in 1..=3600000 ms",
            ));
        }
        let mut rule_keys = BTreeSet::new();
        for (i, rule) in self.rules.meetings.iter().enumerate() {
            if rule.at_least == 0 || rule.at_least > 1000 {
                return Err(invalid(
                    format!("rules.meetings[{i}].at_least"),
                    "must be in 1..=1000",
                ));
            }
            if !rule_keys.insert((rule.kind, rule.per)) {
                return Err(invalid(
                    format!("rules.meetings[{i}]"),
                    "duplicate rule for this kind and period",
                ));
            }
        }
        if self.rules.study.minutes_per_member_per_month > 44_640 {
            return Err(invalid(
                "rules.study.minutes_per_member_per_month",
                "more minutes than a month has",
            ));
        }
        Ok(())
    }
}

/// Extracts the Ed25519 key from a libp2p peer id (base58 identity multihash of the
/// protobuf-encoded public key: `00 24 08 01 12 20 ‖ key`).
pub fn peer_id_ed25519_key(peer_id: &str) -> Result<PublicKey, String> {
    let bytes = bs58::decode(peer_id)
        .into_vec()
        .map_err(|e| format!("not base58: {e}"))?;
    const PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    if bytes.len() != 38 || bytes[..6] != PREFIX {
        return Err("not the peer id of an Ed25519 key".into());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes[6..]);
    Ok(PublicKey(key))
}

/// The libp2p peer id of an Ed25519 node key.
pub fn peer_id_of(node_key: &PublicKey) -> String {
    let mut bytes = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    bytes.extend_from_slice(&node_key.0);
    bs58::encode(bytes).into_string()
}

/// The validators of a height, in proposer order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
    id: Hash,
}

impl ValidatorSet {
    /// A set from validators in genesis order.
    pub fn new(validators: Vec<Validator>) -> ValidatorSet {
        let keys: Vec<PublicKey> = validators.iter().map(|v| v.consensus_key).collect();
        let id = hash_tagged(Domain::ValidatorSet, &[&encode(&keys)]);
        ValidatorSet { validators, id }
    }

    /// Number of validators.
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// The set id: hash of the consensus keys in order.
    pub fn id(&self) -> Hash {
        self.id
    }

    /// Votes needed to decide: ⌊2n/3⌋ + 1 distinct validators.
    pub fn quorum(&self) -> usize {
        quorum(self.validators.len())
    }

    /// Votes that show at least one honest validator: ⌊(n−1)/3⌋ + 1 (f + 1).
    pub fn honest_threshold(&self) -> usize {
        (self.validators.len().saturating_sub(1)) / 3 + 1
    }

    /// `proposer(h, r) = validators[(h + r) mod n]`.
    pub fn proposer(&self, height: Height, round: Round) -> ValidatorIndex {
        proposer(self.validators.len(), height, round)
    }

    /// The validator at `index`.
    pub fn get(&self, index: ValidatorIndex) -> Option<&Validator> {
        self.validators.get(usize::from(index))
    }

    /// The index of the validator with this consensus key.
    pub fn index_of(&self, key: &PublicKey) -> Option<ValidatorIndex> {
        self.validators
            .iter()
            .position(|v| &v.consensus_key == key)
            .map(|i| i as ValidatorIndex)
    }

    /// All validators.
    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }
}

/// ⌊2n/3⌋ + 1.
pub const fn quorum(n: usize) -> usize {
    2 * n / 3 + 1
}

/// `(h + r) mod n`.
pub fn proposer(n: usize, height: Height, round: Round) -> ValidatorIndex {
    assert!(n > 0, "a validator set is never empty");
    ((height + u64::from(round)) % n as u64) as ValidatorIndex
}

#[cfg(test)]
mod tests {
    use super::*;
    use branchledger_crypto::{Keypair, Signer};

    fn sample() -> Genesis {
        let key = |seed: u8| Keypair::from_seed([seed; 32]).public_key();
        Genesis {
            chain_id: "test-chain".into(),
            genesis_time_ms: 1_700_000_000_000,
            validators: (0..4)
                .map(|i| Validator {
                    name: format!("v{i}"),
                    branch_id: BranchId(format!("b{}", i % 2)),
                    consensus_key: key(10 + i),
                    peer_id: peer_id_of(&key(20 + i)),
                })
                .collect(),
            branches: (0..2)
                .map(|i| Branch {
                    branch_id: BranchId(format!("b{i}")),
                    name: format!("Branch {i}"),
                    signing_key: key(30 + i),
                })
                .collect(),
            consensus: ConsensusParams::default(),
            rules: Rules {
                meetings: vec![MeetingRule {
                    kind: MeetingKind::Committee,
                    at_least: 1,
                    per: RulePeriod::Month,
                }],
                study: StudyRule {
                    minutes_per_member_per_month: 600,
                },
                dues_minor_per_month: 100,
            },
        }
    }

    fn field_of(result: Result<(), GenesisError>) -> String {
        match result {
            Err(GenesisError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn sample_is_valid_and_round_trips_through_json() {
        let genesis = sample();
        assert_eq!(genesis.validate(), Ok(()));
        assert_eq!(Genesis::from_json(&genesis.to_json()), Ok(genesis));
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let mut g = sample();
        g.validators[1].consensus_key = g.validators[0].consensus_key;
        assert_eq!(field_of(g.validate()), "validators[1].consensus_key");
        let mut g = sample();
        g.validators[0].consensus_key = g.branches[1].signing_key;
        assert_eq!(field_of(g.validate()), "validators[0].consensus_key");
        let mut g = sample();
        g.validators[2].peer_id = g.validators[0].peer_id.clone();
        assert_eq!(field_of(g.validate()), "validators[2].peer_id");
        let mut g = sample();
        g.branches[1].branch_id = g.branches[0].branch_id.clone();
        assert_eq!(field_of(g.validate()), "branches[1].branch_id");
    }

    #[test]
    fn unknown_branch_is_refused() {
        let mut g = sample();
        g.validators[3].branch_id = BranchId("nowhere".into());
        let error = g.validate().expect_err("unknown branch");
        assert!(
            error.to_string().contains("validators[3].branch_id"),
            "{error}"
        );
        assert!(
            error.to_string().contains("unknown branch nowhere"),
            "{error}"
        );
    }

    #[test]
    fn bad_key_encodings_are_refused() {
        let json = sample().to_json();
        let good = sample().branches[0].signing_key.to_hex();
        // Too short.
        let short = json.replace(&good, "abcd");
        assert!(
            matches!(Genesis::from_json(&short), Err(GenesisError::Parse(m)) if m.contains("expected 32 bytes"))
        );
        // Not hex.
        let not_hex = json.replace(&good, &"zz".repeat(32));
        assert!(
            matches!(Genesis::from_json(&not_hex), Err(GenesisError::Parse(m)) if m.contains("not hexadecimal"))
        );
        // A small-order point (the identity).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = json.replace(&good, &hex::encode(identity));
        let error = Genesis::from_json(&weak).expect_err("weak key");
        assert!(
            error.to_string().contains("branches[0].signing_key"),
            "{error}"
        );
        assert!(error.to_string().contains("small-order"), "{error}");
        // A peer id that is not an Ed25519 libp2p id.
        let mut g = sample();
        g.validators[0].peer_id = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N".into();
        assert_eq!(field_of(g.validate()), "validators[0].peer_id");
    }

    #[test]
    fn unknown_fields_and_bad_parameters_are_refused() {
        let json = sample()
            .to_json()
            .replacen("\"chain_id\"", "\"colour\": 1,\n  \"chain_id\"", 1);
        assert!(
            matches!(Genesis::from_json(&json), Err(GenesisError::Parse(m)) if m.contains("unknown field `colour`"))
        );
        let mut g = sample();
        g.consensus.max_block_records = 0;
        assert_eq!(field_of(g.validate()), "consensus.max_block_records");
        let mut g = sample();
        g.rules.meetings.push(g.rules.meetings[0].clone());
        assert_eq!(field_of(g.validate()), "rules.meetings[1]");
        let mut g = sample();
        g.validators.clear();
        assert_eq!(field_of(g.validate()), "validators");
    }

    #[test]
    fn proposer_rotates_by_height_and_round() {
        let set = sample().validator_set();
        assert_eq!(set.quorum(), 3);
        assert_eq!(set.proposer(1, 0), 1);
        assert_eq!(set.proposer(1, 3), 0);
        assert_eq!(set.proposer(4, 1), 1);
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(3), 3);
        assert_eq!(quorum(7), 5);
    }

    #[test]
    fn peer_id_round_trips() {
        let key = Keypair::from_seed([5; 32]).public_key();
        assert_eq!(peer_id_ed25519_key(&peer_id_of(&key)), Ok(key));
    }
}
