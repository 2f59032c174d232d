//! Records waiting to be gossiped, bounded in count ([`RECORDS_HELD_MAX`]) and in encoded
//! bytes ([`RECORDS_HELD_BYTES_MAX`]); past either bound the oldest are dropped (they stay in
//! the node's mempool).

use std::collections::VecDeque;

use branchledger_types::wire::{GOSSIP_RECORDS_BYTES_MAX, GOSSIP_RECORDS_MAX};
use branchledger_types::{encoded_len, SignedRecord};

use crate::{RECORDS_HELD_BYTES_MAX, RECORDS_HELD_MAX};

/// Records waiting to be gossiped, oldest first.
#[derive(Debug, Default)]
pub(crate) struct HeldRecords {
    /// Each record with its encoded size.
    records: VecDeque<(SignedRecord, usize)>,
    /// The sum of their encoded sizes.
    bytes: usize,
}

impl HeldRecords {
    /// Holds `records` after those held, dropping the oldest past the bounds; returns how many
    /// were dropped.
    pub(crate) fn push(&mut self, records: Vec<SignedRecord>) -> usize {
        for record in records {
            let size = encoded_len(&record);
            self.bytes += size;
            self.records.push_back((record, size));
        }
        let mut dropped = 0;
        while self.records.len() > RECORDS_HELD_MAX || self.bytes > RECORDS_HELD_BYTES_MAX {
            let Some((_, size)) = self.records.pop_front() else {
                break;
            };
            self.bytes -= size;
            dropped += 1;
        }
        dropped
    }

    /// Whether no record is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether enough is held to fill a batch (half a batch's bytes, or its record count).
    pub(crate) fn batch_ready(&self) -> bool {
        self.records.len() >= GOSSIP_RECORDS_MAX || self.bytes >= GOSSIP_RECORDS_BYTES_MAX / 2
    }

    /// The oldest records that fit one batch ([`GOSSIP_RECORDS_MAX`] records,
    /// [`GOSSIP_RECORDS_BYTES_MAX`] bytes; one record at least), removed; `None` when none is
    /// held.
    pub(crate) fn next_batch(&mut self) -> Option<Vec<SignedRecord>> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some((_, size)) = self.records.front() {
            let size = *size;
            if !batch.is_empty()
                && (batch.len() >= GOSSIP_RECORDS_MAX || bytes + size > GOSSIP_RECORDS_BYTES_MAX)
            {
                break;
            }
            let Some((record, _)) = self.records.pop_front() else {
                break;
            };
            bytes += size;
            batch.push(record);
        }
        self.bytes -= bytes;
        (!batch.is_empty()).then_some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use branchledger_crypto::Keypair;
    use branchledger_types::record::{MemberJoined, MemberStatus};
    use branchledger_types::{BranchId, Date, MemberId, Record, RecordBody};

    fn record(nonce: u64, padding: usize) -> SignedRecord {
        Record {
            chain_id: "held".into(),
            branch_id: BranchId("b0".into()),
            created_at_ms: 1_767_225_600_000,
            nonce,
            body: RecordBody::MemberJoined(MemberJoined {
                member_id: MemberId(format!("m{nonce:06}-{}", "x".repeat(padding))),
                joined_on: Date::from_unix_ms(1_767_225_600_000),
                status: MemberStatus::Full,
                mobile: false,
                member_key: None,
            }),
        }
        .sign(&Keypair::from_seed([1; 32]))
    }

    #[test]
    fn the_oldest_records_are_dropped_past_the_byte_bound() {
        let mut held = HeldRecords::default();
        let big: Vec<SignedRecord> = (0..100).map(|n| record(n, 250 * 1024)).collect();
        let size = encoded_len(&big[0]);
        let fit = RECORDS_HELD_BYTES_MAX / size;
        assert!(fit < big.len() && big.len() < RECORDS_HELD_MAX);
        let dropped = held.push(big.clone());
        assert_eq!(dropped, big.len() - fit);
        assert!(held.bytes <= RECORDS_HELD_BYTES_MAX);
        assert_eq!(held.records.len(), fit);
        // The newest are kept, in order, and come out in batches within the topic's limits.
        let mut out = Vec::new();
        while let Some(batch) = held.next_batch() {
            assert!(batch.iter().map(encoded_len).sum::<usize>() <= GOSSIP_RECORDS_BYTES_MAX);
            out.extend(batch);
        }
        assert_eq!(out, big[big.len() - fit..]);
        assert_eq!(held.bytes, 0);
        assert!(held.is_empty());
    }

    #[test]
    fn the_oldest_records_are_dropped_past_the_count_bound() {
        let mut held = HeldRecords::default();
        let small = record(0, 0);
        let size = encoded_len(&small);
        // Small records: the count bound is reached first.
        assert!(size * (RECORDS_HELD_MAX + 10) < RECORDS_HELD_BYTES_MAX);
        let dropped = held.push(vec![small; RECORDS_HELD_MAX + 10]);
        assert_eq!(dropped, 10);
        assert_eq!(held.records.len(), RECORDS_HELD_MAX);
        assert_eq!(held.bytes, size * RECORDS_HELD_MAX);
        assert!(held.batch_ready());
        let batch = held.next_batch().expect("batch");
        assert!(batch.len() <= GOSSIP_RECORDS_MAX);
    }
}
