//! `branchd testnet`: genesis, keys and homes for an N-node local network.

use std::path::Path;

use anyhow::{bail, Result};
use branchledger_crypto::Signer;
use branchledger_types::genesis::{
    peer_id_of, Branch, ConsensusParams, Genesis, MeetingRule, RulePeriod, Rules, StudyRule,
    Validator,
};
use branchledger_types::record::MeetingKind;
use branchledger_types::BranchId;

use crate::config::NodeConfig;
use crate::home::{generate_keypair, write_key, Home, KeyRole};

/// Names for the first branches of a generated network.
const BRANCH_NAMES: &[&str] = &[
    "north", "south", "east", "west", "centre", "harbour", "hills", "river",
];

/// The branch id of the `i`-th generated branch.
pub fn branch_id(i: usize) -> BranchId {
    match BRANCH_NAMES.get(i) {
        Some(name) => BranchId(format!("branch-{name}")),
        None => BranchId(format!("branch-{i}")),
    }
}

/// The meeting and study rules generated networks use ("three meetings and one lecture").
pub fn default_rules() -> Rules {
    Rules {
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
        ],
        study: StudyRule {
            minutes_per_member_per_month: 300,
        },
        dues_minor_per_month: 2_000,
    }
}

/// The first port a generated network uses: node `i` listens on `base + 10 i` (peer-to-peer),
/// `+ 1` (gRPC) and `+ 2` (metrics), all on loopback.
pub const DEFAULT_BASE_PORT: u16 = 26_600;

/// Where a generated network's nodes listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ports {
    /// On loopback: node `i` on `base + 10 i` (peer-to-peer), `+ 1` (gRPC), `+ 2` (metrics).
    Base(u16),
    /// On loopback, on ports free now and outside the kernel's ephemeral range, so that no
    /// outgoing connection takes one before its node starts (`branchledger_p2p::ports`).
    Free,
    /// In containers (`config/compose.yaml`): every node on all interfaces on 26656 (p2p),
    /// 9090 (gRPC) and 26660 (metrics), dialling the others by service name `node<j>`.
    Compose,
}

/// The container ports of [`Ports::Compose`].
const COMPOSE_PORTS: [u16; 3] = [26_656, 9_090, 26_660];

/// What to generate.
#[derive(Clone, Debug)]
pub struct TestnetOptions {
    /// The chain id.
    pub chain_id: String,
    /// Validators (one node home each).
    pub validators: usize,
    /// Branches, at least one per validator.
    pub branches: usize,
    /// Genesis time, Unix milliseconds.
    pub genesis_time_ms: u64,
    /// Where the nodes listen.
    pub ports: Ports,
    /// Consensus parameters.
    pub consensus: ConsensusParams,
}

/// Creates `out/node0 … out/node{validators-1}`, each a full node home with its own three
/// keys and the shared genesis, on the default ports. With `branches > validators`, the extra
/// branches' keys are written to `out/branches/` (their operators submit pre-signed records).
#[cfg(test)]
pub fn generate(
    out: &Path,
    chain_id: &str,
    validators: usize,
    branches: usize,
    genesis_time_ms: u64,
) -> Result<Genesis> {
    generate_with(
        out,
        &TestnetOptions {
            chain_id: chain_id.to_owned(),
            validators,
            branches,
            genesis_time_ms,
            ports: Ports::Base(DEFAULT_BASE_PORT),
            consensus: ConsensusParams::default(),
        },
    )
}

fn port_plan(ports: Ports, validators: usize) -> Result<Vec<u16>> {
    match ports {
        Ports::Base(base) => (0..validators)
            .flat_map(|i| (0..3).map(move |offset| (i, offset)))
            .map(|(i, offset)| {
                u16::try_from(usize::from(base) + 10 * i + offset)
                    .map_err(|_| anyhow::anyhow!("--base-port too high for {validators} nodes"))
            })
            .collect(),
        Ports::Compose => Ok((0..validators).flat_map(|_| COMPOSE_PORTS).collect()),
        Ports::Free => Ok(branchledger_p2p::ports::unused_local_ports(3 * validators)?),
    }
}

/// Generates a network with every option (see `generate` for the layout).
pub fn generate_with(out: &Path, options: &TestnetOptions) -> Result<Genesis> {
    let (chain_id, validators, branches, genesis_time_ms) = (
        options.chain_id.as_str(),
        options.validators,
        options.branches,
        options.genesis_time_ms,
    );
    if validators == 0 || validators > branchledger_types::limits::VALIDATORS_MAX {
        bail!(
            "--validators must be in 1..={}",
            branchledger_types::limits::VALIDATORS_MAX
        );
    }
    if branches < validators {
        bail!("--branches ({branches}) must be at least --validators ({validators}): each validator belongs to a branch");
    }
    if out.exists() && out.read_dir()?.next().is_some() {
        bail!(
            "{} exists and is not empty; choose a new directory",
            out.display()
        );
    }
    let homes: Vec<Home> = (0..validators)
        .map(|i| Home::new(out.join(format!("node{i}"))))
        .collect();
    let mut branch_list = Vec::new();
    let mut validator_list = Vec::new();
    for i in 0..branches {
        let branch_key = generate_keypair();
        let path = if let Some(home) = homes.get(i) {
            home.create_dirs()?;
            home.key_path(KeyRole::Branch)
        } else {
            std::fs::create_dir_all(out.join("branches"))?;
            out.join("branches").join(format!("{}.json", branch_id(i)))
        };
        write_key(&path, KeyRole::Branch, &branch_key)?;
        branch_list.push(Branch {
            branch_id: branch_id(i),
            name: format!(
                "Branch {}",
                branch_id(i).as_str().trim_start_matches("branch-")
            ),
            signing_key: branch_key.public_key(),
        });
    }
    for (i, home) in homes.iter().enumerate() {
        let node_key = generate_keypair();
        let consensus_key = generate_keypair();
        write_key(&home.key_path(KeyRole::Node), KeyRole::Node, &node_key)?;
        write_key(
            &home.key_path(KeyRole::Consensus),
            KeyRole::Consensus,
            &consensus_key,
        )?;
        validator_list.push(Validator {
            name: format!("validator-{i}"),
            branch_id: branch_id(i),
            consensus_key: consensus_key.public_key(),
            peer_id: peer_id_of(&node_key.public_key()),
        });
    }
    let genesis = Genesis {
        chain_id: chain_id.to_owned(),
        genesis_time_ms,
        validators: validator_list,
        branches: branch_list,
        consensus: options.consensus.clone(),
        rules: default_rules(),
    };
    genesis.validate()?;
    let plan = port_plan(options.ports, validators)?;
    let port = |i: usize, offset: usize| -> Result<u16> { Ok(plan[3 * i + offset]) };
    for (i, home) in homes.iter().enumerate() {
        std::fs::write(home.genesis_path(), genesis.to_json() + "\n")?;
        let mut config = NodeConfig {
            name: format!("validator-{i}"),
            ..NodeConfig::default()
        };
        let compose = options.ports == Ports::Compose;
        let (listen_ip, bind) = if compose {
            ("0.0.0.0", [0, 0, 0, 0])
        } else {
            ("127.0.0.1", [127, 0, 0, 1])
        };
        config.p2p.listen = format!("/ip4/{listen_ip}/tcp/{}", port(i, 0)?);
        config.p2p.peers = (0..validators)
            .filter(|j| *j != i)
            .map(|j| {
                let host = if compose {
                    format!("/dns4/node{j}")
                } else {
                    "/ip4/127.0.0.1".to_owned()
                };
                Ok(format!(
                    "{host}/tcp/{}/p2p/{}",
                    port(j, 0)?,
                    genesis.validators[j].peer_id
                ))
            })
            .collect::<Result<_>>()?;
        config.api.listen = std::net::SocketAddr::from((bind, port(i, 1)?));
        config.metrics.listen = Some(std::net::SocketAddr::from((bind, port(i, 2)?)));
        std::fs::write(home.config_dir().join("config.toml"), config.to_toml())?;
    }
    Ok(genesis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::read_key;

    #[test]
    fn compose_networks_listen_everywhere_and_dial_by_service_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("net");
        let genesis = generate_with(
            &out,
            &TestnetOptions {
                chain_id: "compose".into(),
                validators: 4,
                branches: 4,
                genesis_time_ms: 1,
                ports: Ports::Compose,
                consensus: ConsensusParams::default(),
            },
        )
        .expect("generate");
        let config = NodeConfig::load(&out.join("node2/config/config.toml")).expect("config");
        assert_eq!(config.p2p.listen, "/ip4/0.0.0.0/tcp/26656");
        assert_eq!(
            config.p2p.peers[0],
            format!(
                "/dns4/node0/tcp/26656/p2p/{}",
                genesis.validators[0].peer_id
            )
        );
        assert_eq!(config.p2p.peers.len(), 3);
        assert_eq!(config.api.listen.to_string(), "0.0.0.0:9090");
    }

    #[test]
    fn testnet_homes_hold_matching_keys_and_genesis() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("net");
        let genesis = generate(&out, "devnet", 4, 5, 1).expect("generate");
        assert_eq!(genesis.validators.len(), 4);
        assert_eq!(genesis.branches.len(), 5);
        for i in 0..4 {
            let home = Home::new(out.join(format!("node{i}")));
            let text = std::fs::read_to_string(home.genesis_path()).expect("genesis");
            assert_eq!(Genesis::from_json(&text).expect("valid"), genesis);
            let consensus =
                read_key(&home.key_path(KeyRole::Consensus), KeyRole::Consensus).expect("key");
            assert_eq!(consensus.public_key(), genesis.validators[i].consensus_key);
            let node = read_key(&home.key_path(KeyRole::Node), KeyRole::Node).expect("key");
            assert_eq!(
                peer_id_of(&node.public_key()),
                genesis.validators[i].peer_id
            );
            let branch = read_key(&home.key_path(KeyRole::Branch), KeyRole::Branch).expect("key");
            assert_eq!(branch.public_key(), genesis.branches[i].signing_key);
            let config = NodeConfig::load(&home.config_dir().join("config.toml")).expect("config");
            assert_eq!(config.p2p.peers.len(), 3);
            assert_eq!(
                config.api.listen.port(),
                DEFAULT_BASE_PORT + 10 * i as u16 + 1
            );
        }
        assert!(out.join("branches").join("branch-centre.json").exists());
        // A second run into the same directory is refused, never overwriting keys.
        assert!(generate(&out, "devnet", 4, 4, 1).is_err());
        assert!(generate(&dir.path().join("x"), "devnet", 3, 2, 1).is_err());
    }
}
