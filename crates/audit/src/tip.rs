//! The tip an auditor expects, and the check of the tip it finds against it.
//!
//! A chain that verifies from genesis is a finalised *prefix* of the chain: every block in it
//! was decided, but nothing in the data says that no block came after it, so a store rolled
//! back to an earlier height, or an export cut short with a trailer written again, verifies as
//! well as the whole. Only a tip the auditor has from elsewhere (another node's status, a
//! published checkpoint) closes that gap: [`ExpectedTip`] is that tip, and `check_tip`
//! refuses a chain that ends anywhere else, shorter, longer or on another block.

use std::fmt;
use std::str::FromStr;

use branchledger_crypto::Hash;
use branchledger_types::Height;

use crate::{fail, AuditFailure};

/// The tip the audited chain must end at: a height and the id of the block there, written
/// `HEIGHT:BLOCK_ID` (the block id in hex, as `branchd status` prints it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedTip {
    /// The tip's height (at least 1).
    pub height: Height,
    /// The tip's block id.
    pub block_id: Hash,
}

/// Why a `HEIGHT:BLOCK_ID` could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected tip {text:?}: {reason} (write it HEIGHT:BLOCK_ID, the block id in hex)")]
pub struct ParseTipError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for ExpectedTip {
    type Err = ParseTipError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| ParseTipError {
            text: text.to_owned(),
            reason,
        };
        let (height, block_id) = text
            .trim()
            .split_once(':')
            .ok_or_else(|| error("no ':' between the height and the block id".to_owned()))?;
        let height: Height = height
            .trim()
            .parse()
            .map_err(|e| error(format!("height {height:?}: {e}")))?;
        if height == 0 {
            return Err(error(
                "height 0 holds no block (the first block is at height 1)".to_owned(),
            ));
        }
        let block_id = Hash::from_hex(block_id).map_err(|e| error(format!("block id: {e}")))?;
        Ok(ExpectedTip { height, block_id })
    }
}

impl fmt::Display for ExpectedTip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.height, self.block_id)
    }
}

/// What is compared with the expected tip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Subject {
    /// The tip of a data directory's chain.
    Chain,
    /// The last block of an export.
    Export,
}

impl Subject {
    fn name(self) -> &'static str {
        match self {
            Subject::Chain => "the chain's tip",
            Subject::Export => "the export's last block",
        }
    }
}

/// Checks `found` (the height and block id the chain or export ends at; `None` for an empty
/// chain) against `expected`. `at_expected` is the id of the block found at the expected
/// height, if there is one, to say whether a chain that goes past the expected tip holds it.
///
/// The failure names both tips. Its height is the first height known wrong: the first one
/// missing from a shorter chain, the expected height if the block there differs, the one after
/// it if a longer chain holds the expected tip.
pub(crate) fn check_tip(
    expected: &ExpectedTip,
    subject: Subject,
    found: Option<(Height, Hash)>,
    at_expected: Option<Hash>,
) -> Result<(), AuditFailure> {
    let Some((height, block_id)) = found else {
        return Err(fail(
            1,
            None,
            format!("tip mismatch: expected tip {expected}, found no block (the chain is empty)"),
        ));
    };
    let both = format!("expected tip {expected}, found {height}:{block_id}");
    let name = subject.name();
    if height < expected.height {
        return Err(fail(
            height + 1,
            None,
            format!(
                "tip mismatch: {both}: {name} is below the expected tip (truncated or rolled back)"
            ),
        ));
    }
    if height == expected.height {
        if block_id == expected.block_id {
            return Ok(());
        }
        return Err(fail(
            height,
            None,
            format!("tip mismatch: {both}: {name} is another block at the expected height"),
        ));
    }
    let (first_bad, holds) = match at_expected {
        Some(id) if id == expected.block_id => (
            expected.height + 1,
            format!(
                "; the block at height {} is the expected one, blocks follow it",
                expected.height
            ),
        ),
        Some(id) => (
            expected.height,
            format!(
                "; the block at height {} is {id}, not the expected one",
                expected.height
            ),
        ),
        None => (expected.height, String::new()),
    };
    Err(fail(
        first_bad,
        None,
        format!("tip mismatch: {both}: {name} is above the expected tip{holds}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> Hash {
        Hash([byte; 32])
    }

    #[test]
    fn an_expected_tip_reads_and_prints_as_height_colon_block_id() {
        let text = format!("12:{}", id(0xab));
        let tip: ExpectedTip = text.parse().expect("valid");
        assert_eq!(
            tip,
            ExpectedTip {
                height: 12,
                block_id: id(0xab)
            }
        );
        assert_eq!(tip.to_string(), text);
        for (bad, why) in [
            ("12", "no ':'"),
            (&format!("x:{}", id(1)) as &str, "height"),
            (&format!("0:{}", id(1)), "height 0"),
            ("3:abcd", "block id"),
            ("3:zz", "block id"),
        ] {
            let error = bad.parse::<ExpectedTip>().expect_err(bad);
            assert!(error.to_string().contains(why), "{bad}: {error}");
            assert!(error.to_string().contains("HEIGHT:BLOCK_ID"), "{error}");
        }
    }

    #[test]
    fn a_tip_elsewhere_fails_naming_both_tips_and_the_first_bad_height() {
        let expected = ExpectedTip {
            height: 8,
            block_id: id(8),
        };
        assert_eq!(
            check_tip(&expected, Subject::Chain, Some((8, id(8))), Some(id(8))),
            Ok(())
        );
        let cases = [
            (None, None, 1, "found no block"),
            (Some((6, id(6))), None, 7, "below the expected tip"),
            (Some((8, id(9))), Some(id(9)), 8, "another block"),
            (Some((10, id(10))), Some(id(8)), 9, "is the expected one"),
            (Some((10, id(10))), Some(id(7)), 8, "not the expected one"),
            (Some((10, id(10))), None, 8, "above the expected tip"),
        ];
        for (found, at_expected, height, says) in cases {
            let failure = check_tip(&expected, Subject::Export, found, at_expected)
                .expect_err("not the expected tip");
            assert_eq!(failure.height, height, "{failure}");
            assert!(failure.rule.contains(says), "{failure}");
            assert!(failure.rule.contains(&expected.to_string()), "{failure}");
            if let Some((h, found)) = found {
                assert!(failure.rule.contains(&format!("{h}:{found}")), "{failure}");
                assert!(failure.rule.contains("export"), "{failure}");
            }
        }
    }
}
