//! The example genesis in `config/` must always parse and validate, so it never rots.
//!
//! `BRANCHLEDGER_BLESS=1 cargo test -p branchledger-types --test example_genesis` rewrites it
//! from the deterministic construction below (keys from fixed seeds: an example only, never
//! for a real network).

use branchledger_crypto::{Keypair, Signer};
use branchledger_types::genesis::{
    peer_id_of, Branch, ConsensusParams, Genesis, MeetingRule, RulePeriod, Rules, StudyRule,
    Validator,
};
use branchledger_types::record::MeetingKind;
use branchledger_types::BranchId;

/// A path under this crate, resolved when the test runs (not when it is compiled, so a build
/// cache shared by several checkouts never points into another one).
fn manifest_path(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join(relative)
}

fn example_path() -> std::path::PathBuf {
    manifest_path("../../config/genesis.example.json")
}

fn key(role: u8, i: u8) -> Keypair {
    Keypair::from_seed([role.wrapping_mul(16).wrapping_add(i); 32])
}

fn example() -> Genesis {
    let names = ["north", "south", "east", "west"];
    let branches: Vec<Branch> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Branch {
            branch_id: BranchId(format!("branch-{name}")),
            name: format!("{} branch", name[..1].to_uppercase() + &name[1..]),
            signing_key: key(1, i as u8).public_key(),
        })
        .collect();
    let validators = names
        .iter()
        .enumerate()
        .map(|(i, name)| Validator {
            name: format!("validator-{name}"),
            branch_id: BranchId(format!("branch-{name}")),
            consensus_key: key(2, i as u8).public_key(),
            peer_id: peer_id_of(&key(3, i as u8).public_key()),
        })
        .collect();
    Genesis {
        chain_id: "branchledger-example".into(),
        genesis_time_ms: 1_767_225_600_000,
        validators,
        branches,
        consensus: ConsensusParams::default(),
        rules: Rules {
            meetings: vec![
                MeetingRule {
                    kind: MeetingKind::BranchAssembly,
                    at_least: 1,
                    per: RulePeriod::Quarter,
                },
                MeetingRule {
                    kind: MeetingKind::Committee,
                    at_least: 1,
                    per: RulePeriod::Month,
                },
                MeetingRule {
                    kind: MeetingKind::Group,
                    at_least: 1,
                    per: RulePeriod::Month,
                },
                MeetingRule {
                    kind: MeetingKind::Lecture,
                    at_least: 1,
                    per: RulePeriod::Quarter,
                },
                MeetingRule {
                    kind: MeetingKind::OrganisationalLife,
                    at_least: 1,
                    per: RulePeriod::Year,
                },
            ],
            study: StudyRule {
                minutes_per_member_per_month: 600,
            },
            dues_minor_per_month: 2_000,
        },
    }
}

#[test]
fn example_genesis_parses_and_validates() {
    if std::env::var_os("BRANCHLEDGER_BLESS").is_some() {
        std::fs::write(example_path(), example().to_json() + "\n").expect("write example genesis");
    }
    let text = std::fs::read_to_string(example_path()).expect("config/genesis.example.json exists");
    let genesis = Genesis::from_json(&text).expect("example genesis is valid");
    assert_eq!(genesis.validators.len(), 4);
    assert_eq!(genesis.branches.len(), 4);
    assert_eq!(genesis.validator_set().quorum(), 3);
    // Round trip: what we print, we read back identically.
    assert_eq!(Genesis::from_json(&genesis.to_json()), Ok(genesis));
}
