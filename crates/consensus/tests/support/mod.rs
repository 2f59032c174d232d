//! What the consensus tests share: validators' keys and their set.

use branchledger_crypto::{Keypair, Signer};
use branchledger_types::genesis::peer_id_of;
use branchledger_types::{BranchId, Validator, ValidatorSet};

/// The consensus keys of `n` validators.
pub fn keys(n: usize) -> Vec<Keypair> {
    (0..n)
        .map(|i| Keypair::from_seed([i as u8 + 1; 32]))
        .collect()
}

/// The validator set of `keys`, in order.
pub fn validator_set(keys: &[Keypair]) -> ValidatorSet {
    ValidatorSet::new(
        keys.iter()
            .enumerate()
            .map(|(i, k)| Validator {
                name: format!("v{i}"),
                branch_id: BranchId("b".into()),
                consensus_key: k.public_key(),
                peer_id: peer_id_of(&k.public_key()),
            })
            .collect(),
    )
}
