//! `branchd init`: a new node home (configuration, three keys, data directory), and `branchd
//! reset`: an emptied store that keeps the consensus safety state.

use std::path::Path;

use anyhow::{bail, Context, Result};
use branchledger_crypto::Signer;

use crate::config::NodeConfig;
use crate::home::{generate_keypair, write_key, Home, KeyRole};

/// Creates a node home at `home`: `config/config.toml` with defaults and `name`, a node key,
/// a consensus key and a branch key, `data/`, and `config/genesis.json` copied from `genesis`
/// if given. Prints what the genesis coordinator needs (public keys, peer id) as JSON.
pub fn init(home_dir: &Path, name: &str, genesis: Option<&Path>) -> Result<()> {
    let home = Home::new(home_dir);
    let config_dir = home.config_dir();
    if config_dir.join("config.toml").exists()
        || [KeyRole::Node, KeyRole::Consensus, KeyRole::Branch]
            .iter()
            .any(|r| home.key_path(*r).exists())
    {
        bail!(
            "{} already holds a node home: refusing to overwrite its keys",
            home_dir.display()
        );
    }
    std::fs::create_dir_all(&config_dir)
        .with_context(|| format!("creating {}", config_dir.display()))?;
    std::fs::create_dir_all(home.data_dir())?;
    if let Some(genesis) = genesis {
        let text = std::fs::read_to_string(genesis)
            .with_context(|| format!("reading {}", genesis.display()))?;
        branchledger_types::Genesis::from_json(&text)
            .with_context(|| format!("{} is not a valid genesis", genesis.display()))?;
        std::fs::write(home.genesis_path(), text)?;
    }
    let config = NodeConfig {
        name: name.to_owned(),
        ..NodeConfig::default()
    };
    std::fs::write(config_dir.join("config.toml"), config.to_toml())?;
    let mut keys = serde_json::Map::new();
    for role in [KeyRole::Node, KeyRole::Consensus, KeyRole::Branch] {
        let keypair = generate_keypair();
        write_key(&home.key_path(role), role, &keypair)?;
        keys.insert(
            format!("{}_key", role.name()),
            keypair.public_key().to_hex().into(),
        );
        if role == KeyRole::Node {
            keys.insert(
                "peer_id".into(),
                branchledger_types::genesis::peer_id_of(&keypair.public_key()).into(),
            );
        }
    }
    println!("{}", serde_json::to_string_pretty(&keys)?);
    eprintln!(
        "initialised {}; send the keys above to the genesis coordinator{}",
        home_dir.display(),
        if genesis.is_none() {
            ", then put the genesis file at config/genesis.json"
        } else {
            ""
        }
    );
    Ok(())
}

/// Deletes the node's store so it syncs the chain again from its peers. The consensus safety
/// state stays: it remembers the last votes signed, so a validator never signs a vote that
/// conflicts with one it signed before the reset.
pub fn reset(home_dir: &Path) -> Result<()> {
    let store = Home::new(home_dir).store_dir();
    if !store.exists() {
        bail!("{} has no store to reset", store.display());
    }
    std::fs::remove_dir_all(&store).with_context(|| format!("removing {}", store.display()))?;
    eprintln!(
        "removed {}; the safety state stays, and the node syncs the chain from its peers at the next start",
        store.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_a_home_once_and_reset_keeps_the_safety_state() {
        let dir = tempfile::tempdir().expect("temp dir");
        let home_dir = dir.path().join("home");
        init(&home_dir, "north", None).expect("init");
        let home = Home::new(&home_dir);
        for role in [KeyRole::Node, KeyRole::Consensus, KeyRole::Branch] {
            assert!(home.key_path(role).exists());
        }
        let config = NodeConfig::load(&home.config_dir().join("config.toml")).expect("config");
        assert_eq!(config.name, "north");
        assert!(init(&home_dir, "north", None).is_err(), "keys overwritten");
        std::fs::create_dir_all(home.data_dir().join("store")).expect("store dir");
        std::fs::write(home.data_dir().join("safety.bin"), b"state").expect("safety");
        reset(&home_dir).expect("reset");
        assert!(!home.data_dir().join("store").exists());
        assert!(home.data_dir().join("safety.bin").exists());
        assert!(reset(&home_dir).is_err());
    }
}
