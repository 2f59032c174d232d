//! A growing Bloom filter over keys that are record ids: it answers "certainly absent" for
//! nearly every id never stored, without a read of the store. Checking that a record is not
//! already on the chain is done for every record at admission, when a block is checked and
//! again when it is stored; for an id that is nowhere, RocksDB probes the memtables and a
//! filter partition of every level, which was about a seventh of a node's CPU under load.

use fastbloom::BloomFilter;

/// Keys the first filter is sized for; each further one holds twice as many as the one
/// before, so the number of filters grows with the logarithm of the keys.
pub const ID_FILTER_FIRST_CAPACITY: usize = 1 << 16;
/// False-positive rate of each filter: the share of absent keys that still cost a read, per
/// filter. About 13 bits (1.6 bytes) per key.
pub const ID_FILTER_FALSE_POSITIVE: f64 = 0.002;

/// A set of Bloom filters that grows as keys are added, and never answers "absent" for a key
/// that was inserted. It holds no keys and cannot forget: a key deleted from the store stays
/// "maybe present", which only costs a read.
pub struct RecordIdFilter {
    filters: Vec<BloomFilter>,
    /// Keys in the last filter.
    in_last: usize,
    /// What the last filter is sized for.
    last_capacity: usize,
}

impl Default for RecordIdFilter {
    fn default() -> Self {
        RecordIdFilter::new()
    }
}

impl RecordIdFilter {
    /// An empty filter.
    pub fn new() -> Self {
        RecordIdFilter {
            filters: vec![Self::filter(ID_FILTER_FIRST_CAPACITY)],
            in_last: 0,
            last_capacity: ID_FILTER_FIRST_CAPACITY,
        }
    }

    fn filter(capacity: usize) -> BloomFilter {
        BloomFilter::with_false_pos(ID_FILTER_FALSE_POSITIVE).expected_items(capacity)
    }

    /// A record id is a BLAKE3 hash: its first eight bytes serve as the filter's hash. A key
    /// of another length is hashed. (Ids chosen to collide would only cost reads.)
    fn hash(key: &[u8]) -> u64 {
        match key.get(..8) {
            Some(head) if key.len() == 32 => u64::from_le_bytes(head.try_into().expect("8 bytes")),
            _ => u64::from_le_bytes(
                blake3::hash(key).as_bytes()[..8]
                    .try_into()
                    .expect("8 bytes"),
            ),
        }
    }

    /// Adds a key.
    pub fn insert(&mut self, key: &[u8]) {
        if self.in_last == self.last_capacity {
            self.last_capacity *= 2;
            self.filters.push(Self::filter(self.last_capacity));
            self.in_last = 0;
        }
        let hash = Self::hash(key);
        self.filters
            .last_mut()
            .expect("at least one filter")
            .insert_hash(hash);
        self.in_last += 1;
    }

    /// False only if the key was never inserted.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        let hash = Self::hash(key);
        self.filters.iter().any(|f| f.contains_hash(hash))
    }

    /// How many filters it has grown to.
    pub fn filters(&self) -> usize {
        self.filters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_id_filter_never_forgets_an_id_as_it_grows() {
        let mut filter = RecordIdFilter::new();
        let ids: Vec<[u8; 32]> = (0u32..(3 * ID_FILTER_FIRST_CAPACITY as u32))
            .map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes())
            .collect();
        for id in &ids {
            filter.insert(id);
        }
        assert!(filter.filters() >= 2, "the filter grew");
        assert!(ids.iter().all(|id| filter.may_contain(id)));
        let absent = (0u32..10_000)
            .map(|i| *blake3::hash(&(u32::MAX - i).to_le_bytes()).as_bytes())
            .filter(|id| filter.may_contain(id))
            .count();
        assert!(absent < 200, "{absent} of 10 000 absent ids look present");
        // Keys that are not 32 bytes long are hashed, not cut.
        filter.insert(b"short");
        assert!(filter.may_contain(b"short"));
    }
}
