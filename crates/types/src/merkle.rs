//! A binary Merkle tree over record ids, shaped and hashed as RFC 6962 §2.1 (and RFC 9162
//! §2.1), with BLAKE3 as the hash.
//!
//! * empty tree: `H()`;
//! * leaf: `H(0x00 ‖ record_id)`;
//! * inner node over `D[0:n]`: `H(0x01 ‖ MTH(D[0:k]) ‖ MTH(D[k:n]))`, `k` the largest power
//!   of two smaller than `n`.
//!
//! Inclusion proofs are the RFC's audit paths, checked by the RFC 9162 §2.1.3.2 algorithm.
//! The prefixes keep a leaf from ever being mistaken for an inner node.

use borsh::{BorshDeserialize, BorshSerialize};
use branchledger_crypto::Hash;
use serde::{Deserialize, Serialize};

use crate::limits::MERKLE_PATH_MAX;

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// The hash of a leaf.
pub fn leaf_hash(record_id: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[LEAF_PREFIX]);
    hasher.update(&record_id.0);
    Hash(*hasher.finalize().as_bytes())
}

/// The hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[NODE_PREFIX]);
    hasher.update(&left.0);
    hasher.update(&right.0);
    Hash(*hasher.finalize().as_bytes())
}

/// The root of the tree over `leaves` (record ids, in block order).
pub fn root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash(*blake3::hash(&[]).as_bytes());
    }
    let hashed: Vec<Hash> = leaves.iter().map(leaf_hash).collect();
    subtree_root(&hashed)
}

fn largest_power_of_two_below(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn subtree_root(hashed: &[Hash]) -> Hash {
    match hashed.len() {
        1 => hashed[0],
        n => {
            let k = largest_power_of_two_below(n);
            node_hash(&subtree_root(&hashed[..k]), &subtree_root(&hashed[k..]))
        }
    }
}

/// Proof that a leaf is at `index` in a tree of `tree_size` leaves.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct InclusionProof {
    /// Position of the leaf, from 0.
    pub index: u64,
    /// Number of leaves in the tree.
    pub tree_size: u64,
    /// Sibling hashes from the leaf up to the root.
    pub path: Vec<Hash>,
}

/// Why an inclusion proof failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The index is not inside the tree.
    #[error("leaf index {index} is outside a tree of {tree_size} leaves")]
    IndexOutOfRange {
        /// The index.
        index: u64,
        /// The tree size.
        tree_size: u64,
    },
    /// The path has the wrong number of hashes for this index and size.
    #[error("proof path has {actual} hashes, expected {expected}")]
    WrongPathLength {
        /// Expected.
        expected: usize,
        /// Found.
        actual: usize,
    },
    /// The proof is for a tree of another size than the block's record count.
    #[error("proof is for a tree of {proof} leaves, the block has {block}")]
    TreeSizeMismatch {
        /// Size the proof claims.
        proof: u64,
        /// Record count of the block.
        block: u64,
    },
    /// The path does not lead to the root.
    #[error("proof does not lead to the records root")]
    RootMismatch,
}

/// The inclusion proof for the leaf at `index` among `leaves`, or none if out of range.
pub fn prove(leaves: &[Hash], index: usize) -> Option<InclusionProof> {
    if index >= leaves.len() {
        return None;
    }
    let hashed: Vec<Hash> = leaves.iter().map(leaf_hash).collect();
    let mut path = Vec::new();
    audit_path(&hashed, index, &mut path);
    Some(InclusionProof {
        index: index as u64,
        tree_size: leaves.len() as u64,
        path,
    })
}

// RFC 6962 §2.1.1 PATH(m, D[n]); siblings are appended from the leaf upwards.
fn audit_path(hashed: &[Hash], index: usize, path: &mut Vec<Hash>) {
    let n = hashed.len();
    if n <= 1 {
        return;
    }
    let k = largest_power_of_two_below(n);
    if index < k {
        audit_path(&hashed[..k], index, path);
        path.push(subtree_root(&hashed[k..]));
    } else {
        audit_path(&hashed[k..], index - k, path);
        path.push(subtree_root(&hashed[..k]));
    }
}

impl InclusionProof {
    /// Checks that `record_id` is the leaf at `self.index` of the tree of `tree_size` leaves
    /// whose root is `root` (RFC 9162 §2.1.3.2). `tree_size` and `root` come from the block
    /// header (`record_count`, `records_root`): the size must be bound, since a path can also
    /// fit a larger tree that shares the leaf's subtrees.
    pub fn verify(&self, record_id: &Hash, root: &Hash, tree_size: u64) -> Result<(), ProofError> {
        if self.tree_size != tree_size {
            return Err(ProofError::TreeSizeMismatch {
                proof: self.tree_size,
                block: tree_size,
            });
        }
        if self.index >= self.tree_size {
            return Err(ProofError::IndexOutOfRange {
                index: self.index,
                tree_size: self.tree_size,
            });
        }
        let expected = expected_path_len(self.index, self.tree_size);
        if self.path.len() != expected || self.path.len() > MERKLE_PATH_MAX {
            return Err(ProofError::WrongPathLength {
                expected,
                actual: self.path.len(),
            });
        }
        let mut fn_ = self.index;
        let mut sn = self.tree_size - 1;
        let mut r = leaf_hash(record_id);
        for p in &self.path {
            if sn == 0 {
                return Err(ProofError::RootMismatch);
            }
            if fn_ & 1 == 1 || fn_ == sn {
                r = node_hash(p, &r);
                if fn_ & 1 == 0 {
                    while fn_ & 1 == 0 && fn_ != 0 {
                        fn_ >>= 1;
                        sn >>= 1;
                    }
                }
            } else {
                r = node_hash(&r, p);
            }
            fn_ >>= 1;
            sn >>= 1;
        }
        if sn == 0 && r == *root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        }
    }
}

fn expected_path_len(index: u64, tree_size: u64) -> usize {
    // Count the levels the RFC 9162 loop walks before sn reaches 0.
    let mut fn_ = index;
    let mut sn = tree_size - 1;
    let mut len = 0;
    while sn != 0 {
        if (fn_ & 1 == 0) && fn_ == sn {
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        }
        len += 1;
        fn_ >>= 1;
        sn >>= 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| Hash::of(&(i as u64).to_le_bytes()))
            .collect()
    }

    const SIZES: [usize; 7] = [0, 1, 2, 3, 5, 8, 1000];

    #[test]
    fn root_shape_matches_rfc_6962_for_small_trees() {
        let d = ids(3);
        let l: Vec<Hash> = d.iter().map(leaf_hash).collect();
        assert_eq!(root(&d[..1]), l[0]);
        assert_eq!(root(&d[..2]), node_hash(&l[0], &l[1]));
        assert_eq!(root(&d), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        assert_eq!(root(&[]), Hash(*blake3::hash(&[]).as_bytes()));
    }

    #[test]
    fn every_leaf_of_every_size_proves() {
        for n in SIZES {
            let d = ids(n);
            let r = root(&d);
            for (i, id) in d.iter().enumerate() {
                let proof = prove(&d, i).expect("index in range");
                assert_eq!(proof.verify(id, &r, n as u64), Ok(()), "n={n} i={i}");
                // The proof does not hold for another leaf or another root.
                let other = Hash::of(b"not in the tree");
                assert!(proof.verify(&other, &r, n as u64).is_err(), "n={n} i={i}");
                assert!(proof.verify(id, &other, n as u64).is_err(), "n={n} i={i}");
            }
            assert!(prove(&d, n).is_none());
        }
    }

    #[test]
    fn every_tampered_proof_element_fails() {
        for n in SIZES.into_iter().filter(|n| *n > 0) {
            let d = ids(n);
            let r = root(&d);
            // Every leaf for the small sizes; a spread of leaves for the large one.
            let indices: Vec<usize> = if n <= 8 {
                (0..n).collect()
            } else {
                vec![0, 1, 511, 512, 998, 999]
            };
            for i in indices {
                let proof = prove(&d, i).expect("index in range");
                for j in 0..proof.path.len() {
                    for bit in [0usize, 7, 255] {
                        let mut bad = proof.clone();
                        bad.path[j].0[bit / 8] ^= 1 << (bit % 8);
                        assert_eq!(
                            bad.verify(&d[i], &r, n as u64),
                            Err(ProofError::RootMismatch),
                            "n={n} i={i} j={j}"
                        );
                    }
                }
                let mut bad = proof.clone();
                bad.index = (bad.index + 1) % bad.tree_size;
                if n > 1 {
                    assert!(
                        bad.verify(&d[i], &r, n as u64).is_err(),
                        "index moved n={n} i={i}"
                    );
                }
                let mut bad = proof.clone();
                bad.tree_size += 1;
                assert!(matches!(
                    bad.verify(&d[i], &r, n as u64),
                    Err(ProofError::TreeSizeMismatch { .. })
                ));
                assert!(
                    proof.verify(&d[i], &r, n as u64 + 1).is_err(),
                    "size grown n={n} i={i}"
                );
                let mut bad = proof.clone();
                bad.path.push(Hash::ZERO);
                assert!(matches!(
                    bad.verify(&d[i], &r, n as u64),
                    Err(ProofError::WrongPathLength { .. })
                ));
                if !proof.path.is_empty() {
                    let mut bad = proof.clone();
                    bad.path.pop();
                    assert!(matches!(
                        bad.verify(&d[i], &r, n as u64),
                        Err(ProofError::WrongPathLength { .. })
                    ));
                }
                let mut bad = proof.clone();
                bad.index = bad.tree_size;
                assert!(matches!(
                    bad.verify(&d[i], &r, n as u64),
                    Err(ProofError::IndexOutOfRange { .. })
                ));
            }
        }
    }

    #[test]
    fn leaf_and_node_hashes_are_separated() {
        // A two-leaf tree's root is not the leaf hash of the concatenation.
        let d = ids(2);
        assert_ne!(root(&d), leaf_hash(&Hash::of(&[d[0].0, d[1].0].concat())));
    }
}
